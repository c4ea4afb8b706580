"""
Progress probe
==============

:class:`ProgressProbe` is the WSGI application that answers
``GET /progress?X-Progress-ID=<id>`` in the dialect the client parses (see
:mod:`wsgiprogress.dialects`).  :class:`~wsgiprogress.middleware.ProgressMiddleware`
mounts it at ``progress_url``; it can also be mounted on its own:

.. code-block:: python

    from wsgiprogress import ProgressProbe, ProgressTable

    table = ProgressTable()
    probe = ProgressProbe(table, dialect="nginx")

Query parameters: the ID (unless sent as a header), ``dialect`` (``native``,
``lighttpd``, ``nginx``), ``format`` (``json``, ``jsonp``, ``legacy``) and the
dialect's JSONP callback parameter.  A bad ID, dialect, format or callback is
answered 400 with a short reason; nothing a client sends is ever reflected as
script.  Every answer carries anti-cache headers.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, NamedTuple, Optional, Tuple
from urllib.parse import parse_qs

from .dialects import DIALECTS, render
from .ids import ID_RULE, IdFinder, is_valid_id
from .progress_stream import ProgressStream
from .responses import NO_CACHE_HEADERS, plain, respond, start_event_stream
from .settings import PROBE_SETTINGS, WAIT_SETTINGS, resolve
from .waiters import ClientWatch, parse_wait

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from .entry import ProgressEntry
    from .store import ProgressStore

log = logging.getLogger("wsgiprogress")

MAX_CALLBACK_LENGTH = 64
MAX_QUERY_FIELDS = 32
_CALLBACK = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*\Z", re.ASCII)

def is_valid_callback(name: str) -> bool:
    """True for a dotted JavaScript identifier of at most 64 ASCII characters."""
    return len(name) <= MAX_CALLBACK_LENGTH and _CALLBACK.match(name) is not None


class ProbeRequestError(ValueError):
    """A probe request that must be answered 400; the message is the reason."""


class ProbeQuery(NamedTuple):
    """A validated probe request."""

    progress_id: str
    dialect: str
    format: str
    callback: Optional[str]
    content_type: str
    wait: float
    stream: bool


class ProgressProbe:
    """Answers progress probes from *store*.

    :param store: the :class:`~wsgiprogress.store.ProgressStore` to read.
    :param settings: ``dialect``, ``id_name``, ``allowed_origins``, ``debug``
        (and ``progress_url``, which only the middleware uses), and the
        waiting settings ``max_wait``, ``sse_keepalive``, ``sse_retry``,
        ``sse_max_duration``; see :mod:`wsgiprogress.settings`.
    """

    def __init__(self, store: ProgressStore, **settings: Any) -> None:
        options = resolve(PROBE_SETTINGS + WAIT_SETTINGS, settings)
        self.store = store
        self.max_wait: float = options["max_wait"]
        self.sse_keepalive: float = options["sse_keepalive"]
        self.sse_retry: int = options["sse_retry"]
        self.sse_max_duration: float = options["sse_max_duration"]
        self.dialect: str = options["dialect"]
        self.finder = IdFinder(options["id_name"])
        self.allowed_origins: Tuple[str, ...] = options["allowed_origins"]
        self.debug: bool = options["debug"]

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        headers = self._cors_headers(environ)
        method = environ.get("REQUEST_METHOD", "GET")
        head_only = method == "HEAD"
        if method == "OPTIONS" and self.allowed_origins:
            headers += [("Access-Control-Allow-Methods", "GET, HEAD"),
                        ("Access-Control-Allow-Headers", self.finder.name),
                        ("Access-Control-Max-Age", "600")]
            start_response("204 No Content", [*NO_CACHE_HEADERS, *headers])
            return []
        if method not in ("GET", "HEAD"):
            headers.append(("Allow", "GET, HEAD"))
            return plain(start_response, "405 Method Not Allowed",
                         "the progress probe answers GET and HEAD only", headers)
        try:
            query = self._parse(environ)
        except ProbeRequestError as exc:
            return plain(start_response, "400 Bad Request", str(exc), headers, head_only)
        if query.stream or query.wait > 0:
            event = self.store.waiters.register(query.progress_id)
            if event is None:
                return plain(start_response, "503 Service Unavailable",
                             "too many waiting clients; retry shortly",
                             headers + [("Retry-After", "2")], head_only)
            if query.stream:
                start_event_stream(start_response, headers)
                return ProgressStream(self, query, event, ClientWatch(environ))
            try:
                body = self._wait_for_change(query, event, ClientWatch(environ))
            finally:
                self.store.waiters.unregister(query.progress_id, event)
        else:
            body = self.render(query)
        if self.debug:
            log.info("probe %s: %s", query.progress_id, body.decode("utf-8", "replace").strip())
        return respond(start_response, "200 OK", query.content_type + "; charset=utf-8", body,
                       headers, head_only)

    def render(self, query: ProbeQuery, entry: Optional[ProgressEntry] = None) -> bytes:
        """The answer to *query* for *entry* (default: as it stands now)."""
        if entry is None:
            entry = self.lookup(query.progress_id)
        return render(query.dialect, query.format, query.callback, query.progress_id,
                      entry)[1]

    def _wait_for_change(self, query: ProbeQuery, event: threading.Event,
                         client: ClientWatch) -> bytes:
        first = self.render(query)
        deadline = time.monotonic() + query.wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not client.wait(event, left):
                return self.render(query)
            event.clear()
            now = self.render(query)
            if now != first:
                return now

    def _parse(self, environ: WSGIEnvironment) -> ProbeQuery:
        try:
            params = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True,
                              max_num_fields=MAX_QUERY_FIELDS)
        except ValueError:
            raise ProbeRequestError(
                f"too many query parameters (at most {MAX_QUERY_FIELDS})") from None
        progress_id = self.finder.find(environ)
        if progress_id is None:
            raise ProbeRequestError(f"missing {self.finder.name} (header or query parameter)")
        if not is_valid_id(progress_id):
            raise ProbeRequestError(f"invalid {self.finder.name}: expected {ID_RULE}")
        dialect = DIALECTS.get(_first(params, "dialect") or self.dialect)
        if dialect is None:
            raise ProbeRequestError(f"unknown dialect; expected one of {', '.join(DIALECTS)}")
        callback = _first(params, dialect.callback_param)
        if callback is not None and not is_valid_callback(callback):
            raise ProbeRequestError(
                f"invalid {dialect.callback_param}: expected a dotted JavaScript "
                f"identifier of at most {MAX_CALLBACK_LENGTH} characters")
        fmt = _first(params, "format") or ("jsonp" if callback is not None else "json")
        if fmt not in dialect.formats:
            raise ProbeRequestError(f"the {dialect.name} dialect offers format "
                                    f"{', '.join(dialect.formats)}")
        if fmt == "jsonp" and callback is None:
            if dialect.default_callback is None:
                raise ProbeRequestError(f"format=jsonp needs {dialect.callback_param}=<name>")
            callback = dialect.default_callback
        stream = _first(params, "transport") == "sse" or \
            "text/event-stream" in environ.get("HTTP_ACCEPT", "")
        content_type = render(dialect.name, fmt, callback, progress_id, None)[0]
        try:
            wait = parse_wait(_first(params, "wait"), self.max_wait)
        except ValueError as exc:
            raise ProbeRequestError(str(exc)) from None
        return ProbeQuery(progress_id, dialect.name, fmt, callback, content_type, wait, stream)

    def lookup(self, progress_id: str) -> Optional[ProgressEntry]:
        """The entry, or ``None`` when unknown or the store failed (logged)."""
        try:
            return self.store.get(progress_id)
        except Exception:
            log.warning("progress store failed to read %r; answering unknown",
                        progress_id, exc_info=True)
            return None

    def _cors_headers(self, environ: WSGIEnvironment) -> List[Tuple[str, str]]:
        if not self.allowed_origins:
            return []
        if "*" in self.allowed_origins:
            return [("Access-Control-Allow-Origin", "*")]
        origin = environ.get("HTTP_ORIGIN")
        if origin in self.allowed_origins:
            return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        return [("Vary", "Origin")]


def _first(params: Dict[str, List[str]], name: str) -> Optional[str]:
    values = params.get(name)
    return values[0] if values else None
