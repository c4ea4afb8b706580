"""
Progress probe
==============

:class:`ProgressProbe` is the WSGI application that answers
``GET /progress?X-Progress-ID=<id>`` in the dialect the client parses (see
:mod:`wsgiprogress.web.dialects`).  Both front doors mount it at
``progress_url`` (:mod:`wsgiprogress.web.front`); it can also be mounted on
its own:

.. code-block:: python

    from wsgiprogress import ProgressProbe, ProgressTable

    table = ProgressTable()
    probe = ProgressProbe(table, dialect="nginx")

Query parameters: the ID (unless sent as a header), ``dialect`` (``native``,
``lighttpd``, ``nginx``), ``format`` (``json``, ``jsonp``, ``legacy``) and the
dialect's JSONP callback parameter; ``wait=<seconds>`` answers on the next
change, and ``Accept: text/event-stream`` or ``transport=sse`` streams every
change until the request ends.  A bad ID, dialect, format or callback is
answered 400 with a short reason, and so is an ID shorter than
``min_id_length``; nothing a client sends is ever reflected as script.  Every
answer carries anti-cache headers.

An ``authorize`` hook, when given, is asked ``authorize(environ, progress_id,
"progress")`` before the store is read; ``False`` answers 403.  Without one
anyone who knows an ID reads its progress.  When the store cannot answer in
time (Redis down or frozen) the probe answers ``unknown`` at once, the same
body as for an unknown ID, with the header ``X-Progress-Backend: unavailable``.
"""
from __future__ import annotations

import functools
import logging
import operator
import re
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    NamedTuple,
    Optional,
    Tuple,
    Union,
)

from ..progress.entry import DONE, ERROR, ProgressEntry
from ..progress.ids import ID_RULE, IdFinder, is_valid_id
from ..progress.ratelimit import RateLimitedWarning
from ..progress.store import BackendUnavailable
from ..query import parse_wait, query_params, wants_event_stream
from ..settings import PROBE_SETTINGS, WAIT_SETTINGS, resolve
from . import sse
from .cancel import cancel
from .dialects import DIALECTS, render
from .dialects import content_type as dialect_content_type
from .event_stream import EventStream, StreamTiming
from .responses import (
    cors_headers,
    plain,
    preflight,
    respond,
    start_event_stream,
    too_many_streams,
    too_many_waiters,
)
from .waiting import Answer, LongPoll, open_wake

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from ..progress.store import ProgressStore
    from .mailbox import Authorize

log = logging.getLogger("wsgiprogress")

MAX_CALLBACK_LENGTH = 64
#: Valid probe queries kept parsed, at most.
MAX_PARSED = 1024
#: The longest query string kept parsed.
MAX_PARSED_QUERY = 256
#: Answers kept rendered, at most (a page asks for the same snapshot over and over).
MAX_RENDERED = 1024
#: What an answer is rendered from: every field of an entry.
_FIELDS = operator.attrgetter(*ProgressEntry.__slots__)
#: Sent with an answer the store could not give in time.
BACKEND_UNAVAILABLE = ("X-Progress-Backend", "unavailable")
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


class ProbeWait(NamedTuple):
    """A probe that waits: a long-poll (``wait=``) or an event stream."""

    query: ProbeQuery
    headers: List[Tuple[str, str]]
    head_only: bool


class ProgressProbe:
    """Answers progress probes from *store*.

    :param store: the :class:`~wsgiprogress.progress.store.ProgressStore` to read.
    :param authorize: asked ``authorize(environ, progress_id, "progress")``
        before each read; ``None`` (the default): anyone may read.
    :param settings: ``dialect``, ``id_name``, ``allowed_origins``, ``debug``,
        ``min_id_length`` (and ``progress_url``, which only the middleware uses), and the
        waiting settings ``max_wait``, ``sse_keepalive``, ``sse_retry``,
        ``sse_max_duration``; see :mod:`wsgiprogress.settings`.
    """

    def __init__(self, store: ProgressStore, *, authorize: Optional[Authorize] = None,
                 token: Optional[str] = None, **settings: Any) -> None:
        options = resolve(PROBE_SETTINGS + WAIT_SETTINGS, settings)
        self.store = store
        self.authorize = authorize
        self.token = token
        #: ``DELETE`` cancels, for the token or when the hook allows ``"cancel"``.
        self.methods: Tuple[str, ...] = ("GET", "HEAD") if authorize is None and \
            token is None else ("GET", "HEAD", "DELETE")
        self.min_id_length: int = options["min_id_length"]
        self.read_warning = RateLimitedWarning(
            "progress store failed to read %r; answering unknown")
        self.max_wait: float = options["max_wait"]
        self.timing = StreamTiming.from_options(options)
        self.dialect: str = options["dialect"]
        self.finder = IdFinder(options["id_name"])
        self.allowed_origins: Tuple[str, ...] = options["allowed_origins"]
        self.debug: bool = options["debug"]
        self._parsed: Dict[Tuple[Any, ...], ProbeQuery] = {}
        self._rendered: Dict[Tuple[Any, ...], bytes] = {}

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        decision = self.decide(environ)
        if isinstance(decision, ProbeWait):
            return self._wait(environ, start_response, decision)
        return decision(start_response)

    def decide(self, environ: WSGIEnvironment) -> Union[Answer, ProbeWait]:
        """The answer to the request of *environ* as it stands now, or the
        :class:`ProbeWait` of a long-poll or an event stream.  Our server
        answers a probe on its I/O loop with it, from the few environ keys a
        probe reads (:mod:`wsgiprogress.server.loop_probe`)."""
        headers = cors_headers(environ, self.allowed_origins)
        method = environ.get("REQUEST_METHOD", "GET")
        head_only = method == "HEAD"
        if method == "OPTIONS" and self.allowed_origins:
            return functools.partial(preflight, headers=headers,
                                     methods=", ".join(self.methods),
                                     request_headers=f"{self.finder.name}, Authorization")
        if method not in self.methods:
            allowed = ", ".join(self.methods)
            headers.append(("Allow", allowed))
            spoken = ", ".join(self.methods[:-1]) + " and " + self.methods[-1]
            return functools.partial(plain, status="405 Method Not Allowed",
                                     reason=f"the progress probe answers {spoken} only",
                                     headers=headers)
        try:
            query = self.parse(environ)
        except ProbeRequestError as exc:
            return functools.partial(plain, status="400 Bad Request", reason=str(exc),
                                     headers=headers, head_only=head_only)
        if method == "DELETE":
            return functools.partial(cancel, environ, store=self.store,
                                     progress_id=query.progress_id, authorize=self.authorize,
                                     token=self.token, headers=headers)
        if self.authorize is not None and not self.authorize(environ, query.progress_id,
                                                             "progress"):
            return functools.partial(plain, status="403 Forbidden",
                                     reason="not allowed to read this progress",
                                     headers=headers, head_only=head_only)
        if query.stream or query.wait > 0:
            return ProbeWait(query, headers, head_only)
        available: List[bool] = []
        body = self._answer(query, available)
        return self._reply(query, body, available[-1], headers, head_only)

    def _wait(self, environ: WSGIEnvironment, start_response: StartResponse,
              wait: ProbeWait) -> Iterable[bytes]:
        """A long-poll or an event stream of *wait*'s query."""
        query, headers, head_only = wait
        waiters = self.store.waiters
        wake = open_wake(waiters, query.progress_id, environ)
        if wake is None:
            refuse = too_many_streams if query.stream else too_many_waiters
            return refuse(start_response, headers, head_only)
        self.store.watch(query.progress_id)
        if query.stream:
            start_event_stream(start_response, headers)
            return EventStream(waiters, query.progress_id, wake, environ,
                               self._changes(query), self.timing)
        return LongPoll(waiters, query.progress_id, wake, environ, start_response,
                        *self._changed(query, headers, head_only), seconds=query.wait)

    def _reply(self, query: ProbeQuery, body: bytes, available: bool,
               headers: List[Tuple[str, str]], head_only: bool) -> Answer:
        """The answer carrying *body*, read from a store that could answer
        or not (*available*)."""
        if not available:
            headers = [*headers, BACKEND_UNAVAILABLE]
        if self.debug:
            log.info("probe %s: %s", query.progress_id, body.decode("utf-8", "replace").strip())
        return functools.partial(respond, status="200 OK",
                                 content_type=query.content_type + "; charset=utf-8",
                                 body=body, headers=headers, head_only=head_only)

    def render(self, query: ProbeQuery, entry: Optional[ProgressEntry]) -> bytes:
        """The answer to *query* for *entry* (``None``: unknown).  An answer
        depends on nothing else, so the last :data:`MAX_RENDERED` are kept
        (an unknown ID, a finished or stalled upload asked again and again)."""
        key = (query.dialect, query.format, query.callback, query.progress_id,
               None if entry is None else _FIELDS(entry))
        rendered = self._rendered
        try:
            body, keep = rendered.get(key), True
        except TypeError:  # files or steps listed: rendered each time, not kept
            body, keep = None, False
        if body is None:
            body = render(query.dialect, query.format, query.callback, query.progress_id, entry)
            if keep:
                if len(rendered) >= MAX_RENDERED:
                    rendered.clear()
                rendered[key] = body
        return body

    def _answer(self, query: ProbeQuery, available: List[bool]) -> bytes:
        """The answer to *query* as it stands now; appends to *available*
        whether the store could answer."""
        entry, answered = self._read(query.progress_id)
        available.append(answered)
        return self.render(query, entry)

    def _changed(self, query: ProbeQuery, headers: List[Tuple[str, str]], head_only: bool
                 ) -> Tuple[Callable[[], Optional[Answer]], Callable[[], Answer]]:
        """For a :class:`~wsgiprogress.web.waiting.LongPoll`: the answer once
        it differs from the first read, and the last read's when the time is up."""
        first: List[bytes] = []
        last: List[Tuple[bytes, bool]] = []

        def changed() -> Optional[Answer]:
            available: List[bool] = []
            body = self._answer(query, available)
            last[:] = [(body, available[-1])]
            if not first:
                first.append(body)
            if body == first[0]:
                return None
            return self._reply(query, body, available[-1], headers, head_only)

        def timed_out() -> Answer:
            return self._reply(query, *last[0], headers, head_only)
        return changed, timed_out

    def _changes(self, query: ProbeQuery) -> Callable[[], Tuple[List[bytes], bool]]:
        """For an event stream: the native JSON each time it changes, until
        the request ends."""
        snapshots = self.snapshots(query)

        def collect() -> Tuple[List[bytes], bool]:
            text, over = snapshots()
            return ([] if text is None else [sse.event(text)]), over
        return collect

    def snapshots(self, query: ProbeQuery) -> Callable[[], Tuple[Optional[str], bool]]:
        """Each call: the native JSON of *query*'s progress if it changed
        since the last call (else ``None``), and whether the request ended —
        what an event stream and a WebSocket push."""
        query = query._replace(format="json", callback=None)
        last: List[bytes] = [b""]

        def snapshot() -> Tuple[Optional[str], bool]:
            entry = self.lookup(query.progress_id)
            body = self.render(query, entry)
            over = entry is not None and entry.state in (DONE, ERROR)
            if body == last[0]:
                return None, over
            last[0] = body
            return body.decode("utf-8").strip(), over
        return snapshot

    def parse(self, environ: WSGIEnvironment) -> ProbeQuery:
        """The validated query of *environ*'s request; raises
        :class:`ProbeRequestError`.  A page asks the same few URLs over and
        over: up to :data:`MAX_PARSED` valid ones are kept, of a short query."""
        key = (environ.get("QUERY_STRING", ""), environ.get(self.finder.environ_key),
               environ.get("HTTP_ACCEPT", ""))
        parsed = self._parsed
        query = parsed.get(key)
        if query is None:
            query = self._parse(environ)
            if len(key[0]) <= MAX_PARSED_QUERY:
                if len(parsed) >= MAX_PARSED:
                    parsed.clear()
                parsed[key] = query
        return query

    def _parse(self, environ: WSGIEnvironment) -> ProbeQuery:
        try:
            params = query_params(environ.get("QUERY_STRING", ""))
        except ValueError as exc:
            raise ProbeRequestError(str(exc)) from None
        progress_id = self.finder.find(environ)
        if progress_id is None:
            raise ProbeRequestError(f"missing {self.finder.name} (header or query parameter)")
        if not is_valid_id(progress_id):
            raise ProbeRequestError(f"invalid {self.finder.name}: expected {ID_RULE}")
        if len(progress_id) < self.min_id_length:
            raise ProbeRequestError(
                f"progress ID too short: at least {self.min_id_length} characters")
        dialect = DIALECTS.get(params.get("dialect") or self.dialect)
        if dialect is None:
            raise ProbeRequestError(f"unknown dialect; expected one of {', '.join(DIALECTS)}")
        callback = params.get(dialect.callback_param)
        if callback is not None and not is_valid_callback(callback):
            raise ProbeRequestError(
                f"invalid {dialect.callback_param}: expected a dotted JavaScript "
                f"identifier of at most {MAX_CALLBACK_LENGTH} characters")
        fmt = params.get("format") or ("jsonp" if callback is not None else "json")
        if fmt not in dialect.formats:
            raise ProbeRequestError(f"the {dialect.name} dialect offers format "
                                    f"{', '.join(dialect.formats)}")
        if fmt == "jsonp" and callback is None:
            if dialect.default_callback is None:
                raise ProbeRequestError(f"format=jsonp needs {dialect.callback_param}=<name>")
            callback = dialect.default_callback
        stream = wants_event_stream(environ.get("HTTP_ACCEPT", ""), params.get("transport"))
        content_type = dialect_content_type(dialect.name, fmt)
        try:
            wait = parse_wait(params.get("wait"), self.max_wait)
        except ValueError as exc:
            raise ProbeRequestError(str(exc)) from None
        return ProbeQuery(progress_id, dialect.name, fmt, callback, content_type, wait, stream)

    def lookup(self, progress_id: str) -> Optional[ProgressEntry]:
        """The entry, or ``None`` when unknown or the store failed (logged)."""
        return self._read(progress_id)[0]

    def _read(self, progress_id: str) -> Tuple[Optional[ProgressEntry], bool]:
        """The entry (``None`` when unknown), and False when the store could
        not answer: a running request of this process is read from its
        tracker; a store that cannot answer in time says so at once."""
        try:
            return self.store.read(progress_id), True
        except BackendUnavailable:
            return None, False  # the store logs its outage, once in a while
        except Exception:
            self.read_warning.warn(progress_id, exc_info=True)
            return None, False

