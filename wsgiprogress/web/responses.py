"""
Responses
=========

The answers every endpoint of :mod:`wsgiprogress.web` shares: anti-cache
headers, Content-Length on every body (so keep-alive survives), short
plain-text reasons, JSON, the start of an event stream, and the two answers
a bound gives (503 for too many waiting clients, 413 for a body too large).
"""
from __future__ import annotations

import hmac
import json
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    cast,
)

from . import sse

#: What a client over the waiter cap is told, and when to come back (seconds).
TOO_MANY_WAITERS = "too many waiting clients; retry shortly"
RETRY_AFTER = 2

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse

Headers = List[Tuple[str, str]]

#: Sent with every answer that must never be cached.
NO_CACHE_HEADERS: Sequence[Tuple[str, str]] = (
    ("Cache-Control", "no-cache, no-store, must-revalidate"),
    ("Pragma", "no-cache"),
    ("Expires", "Thu, 01 Jan 1970 00:00:01 GMT"),
    ("X-Content-Type-Options", "nosniff"),
)


class Recorded:
    """A ``start_response`` that keeps what it was given: an answer made once
    and given again (the status and headers, with the body it returned)."""

    status = ""
    headers: Headers = []

    def __call__(self, status: str, headers: Headers, exc_info: Any = None) -> None:
        self.status, self.headers = status, headers

    @property
    def start_response(self) -> StartResponse:
        """This, typed as what it stands for."""
        return cast("StartResponse", self)


def respond(start_response: StartResponse, status: str, content_type: str, body: bytes,
            headers: Sequence[Tuple[str, str]] = (), head_only: bool = False) -> List[bytes]:
    """Start a response with a Content-Length (so keep-alive survives) and
    return its body, or nothing for HEAD."""
    start_response(status, [*NO_CACHE_HEADERS, *headers, ("Content-Type", content_type),
                            ("Content-Length", str(len(body)))])
    return [] if head_only else [body]


def preflight(start_response: StartResponse, headers: Sequence[Tuple[str, str]],
              methods: str, request_headers: str) -> List[bytes]:
    """The answer to a CORS preflight (``OPTIONS``): ``204``, never cached,
    with *headers* (:func:`cors_headers`), the *methods* and request headers a
    page may use, remembered for ten minutes."""
    start_response("204 No Content", [*NO_CACHE_HEADERS, *headers,
                                      ("Access-Control-Allow-Methods", methods),
                                      ("Access-Control-Allow-Headers", request_headers),
                                      ("Access-Control-Max-Age", "600")])
    return []


def has_bearer_token(environ: Mapping[str, Any], token: Optional[str]) -> bool:
    """True when the request says ``Authorization: Bearer <token>`` (compared
    in constant time); never for no *token*."""
    given = environ.get("HTTP_AUTHORIZATION", "")
    return token is not None and hmac.compare_digest(str(given).encode(),
                                                     f"Bearer {token}".encode())


def start_event_stream(start_response: StartResponse,
                       headers: Sequence[Tuple[str, str]] = ()) -> None:
    """Start a server-sent-events answer: never cached, never buffered by a proxy."""
    start_response("200 OK", [*NO_CACHE_HEADERS, *headers,
                              ("Content-Type", sse.CONTENT_TYPE),
                              ("X-Accel-Buffering", "no")])


def plain(start_response: StartResponse, status: str, reason: str,
          headers: Sequence[Tuple[str, str]] = (), head_only: bool = False) -> List[bytes]:
    """A short plain-text answer, e.g. the reason for a 400."""
    return respond(start_response, status, "text/plain; charset=utf-8",
                   (reason + "\n").encode(), headers, head_only)


def json_body(start_response: StartResponse, status: str, data: Any,
              headers: Sequence[Tuple[str, str]] = (), head_only: bool = False) -> List[bytes]:
    """A JSON answer."""
    return respond(start_response, status, "application/json; charset=utf-8",
                   json.dumps(data).encode(), headers, head_only)


def too_many_waiters(start_response: StartResponse, headers: Sequence[Tuple[str, str]] = (),
                     head_only: bool = False) -> List[bytes]:
    """503 with ``Retry-After``: the waiter cap is reached."""
    return plain(start_response, "503 Service Unavailable", TOO_MANY_WAITERS,
                 [*headers, ("Retry-After", str(RETRY_AFTER))], head_only)


def too_many_streams(start_response: StartResponse, headers: Sequence[Tuple[str, str]] = (),
                     head_only: bool = False) -> List[bytes]:
    """The waiter cap's answer to an event stream.  A 503 would close an
    ``EventSource`` for good (WHATWG HTML §9.2 reconnects only after a 200
    ``text/event-stream``), so: 200, ``retry:`` with the 503's delay and the
    reason as a comment, and the stream ends; the client comes back then."""
    start_event_stream(start_response, [*headers, ("Retry-After", str(RETRY_AFTER))])
    return [] if head_only else [sse.retry(RETRY_AFTER * 1000) + sse.comment(TOO_MANY_WAITERS)]


def too_large(start_response: StartResponse, limit: int) -> List[bytes]:
    """413 for a request body over *limit* bytes."""
    return plain(start_response, "413 Request Entity Too Large",
                 f"request body too large: the limit is {limit} bytes")


def cors_headers(environ: Mapping[str, Any], allowed_origins: Sequence[str],
                 expose: Sequence[str] = ()) -> Headers:
    """The CORS headers for a request from ``environ["HTTP_ORIGIN"]``: none
    when CORS is off, ``*`` when any origin may read, else the origin itself
    when it is allowed (and ``Vary: Origin`` either way); *expose* names
    response headers a page may read (``Access-Control-Expose-Headers``)."""
    if not allowed_origins:
        return []
    exposed = [("Access-Control-Expose-Headers", ", ".join(expose))] if expose else []
    if "*" in allowed_origins:
        return [("Access-Control-Allow-Origin", "*"), *exposed]
    origin = str(environ.get("HTTP_ORIGIN", ""))
    if origin in allowed_origins:
        return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin"), *exposed]
    return [("Vary", "Origin")]


def with_headers(start_response: StartResponse, extra: Headers,
                 replace: bool = False) -> StartResponse:
    """*start_response* that adds *extra* to every response it starts; with
    *replace*, a response's own fields of those names give way (all but
    ``Vary``, a list), e.g. an application's CORS fields to an endpoint's."""
    names = {name.lower() for name, _ in extra} - {"vary"} if replace else set()

    def start(status: str, headers: List[Tuple[str, str]],
              exc_info: Any = None) -> Callable[[bytes], object]:
        kept = [field for field in headers if field[0].lower() not in names]
        return start_response(status, [*kept, *extra], exc_info)
    return start
