"""
Operations at the front door
============================

:class:`OperationRunner` is how both front doors call the application when
``operations`` is on (:meth:`wsgiprogress.web.front.Front.call`):

* every request gets an :class:`~wsgiprogress.operations.Operation` in
  ``environ["wsgiprogress.operation"]``;
* ``Prefer: respond-async, wait=N``: the request body is read (spooled to
  disk above 1 MiB), the application moves to an operation thread, and the
  request waits up to N seconds (at most ``operations_max_wait``; no wait: 0).
  Has the application begun its answer by then, that answer is the response,
  as without the preference; otherwise ``202 Accepted`` with ``Location`` of
  the status monitor (:mod:`wsgiprogress.web.monitor`), ``Preference-Applied``
  and ``Retry-After``, and the final response is kept for the monitor (202
  at once when the application writes more than ``max_kept_response``
  through ``write()`` before it returns: that cannot be held).  With
  every operation thread busy, or the store full, the request runs as usual
  (logged at most once a minute);
* ``Prefer: processing`` where the server can send interim responses
  (:data:`wsgiprogress.keys.INTERIM`: :mod:`wsgiprogress.server`, HTTP/1.1):
  ``102 Processing`` with ``Location`` of a new monitor on receipt, then one
  with ``Progress`` per report, until the final response starts
  (:mod:`wsgiprogress.web.interim`).

After a ``202 Accepted`` the request's own progress (its probe) follows the
application, not the connection: ``processing`` with the reported steps, and
it ends when the application does, with its final status
(:meth:`~wsgiprogress.operations.Operation.detach`).

.. code-block:: python

    runner = OperationRunner(store, options)
    return runner(app, environ, start_response)
"""
from __future__ import annotations

import functools
import logging
import shutil
import sys
import tempfile
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, List, Optional, Tuple

from .. import keys
from ..operations import (
    RUNNING,
    KeptBody,
    KeptResponse,
    Operation,
    OperationPool,
    parse_prefer,
)
from ..progress.ratelimit import RateLimitedWarning
from ..progress.tracker import status_code
from .interim import Interim
from .responses import json_body

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..operations import OperationStore

log = logging.getLogger("wsgiprogress")

#: Request bodies up to this size are spooled in memory, larger ones on disk.
SPOOL_IN_MEMORY = 1024 * 1024
#: Environ keys about the client's connection, which an operation outlives.
_CONNECTION_KEYS = (keys.DEPARTURE, "waitress.client_disconnected")
#: The busy and full warnings: at most one line a minute.
WARNING_INTERVAL = 60.0
Head = List[Any]  # [status, headers] once the application started its response


def monitor_url(environ: WSGIEnvironment, url: str, op_id: str) -> str:
    """The path of *op_id*'s status monitor, ``SCRIPT_NAME`` included."""
    return f"{environ.get('SCRIPT_NAME', '')}{url}/{op_id}"


class Answer:
    """What the operation thread hands the request's thread when the
    application answered in time: its head, what it wrote, its iterable."""

    def __init__(self, head: Head, written: KeptBody, first: Optional[bytes],
                 iterator: Iterator[bytes], app_iter: Iterable[bytes]) -> None:
        self.head = head
        self.written = written
        self.first = first
        self.iterator = iterator
        self.app_iter = app_iter
        self.failure: Any = None


class Handoff:
    """Decides, once, whether the application's answer goes to the client
    (it came in time) or is kept (the request answered 202: *on_async* runs
    then, before the operation thread can learn it)."""

    def __init__(self, on_async: Callable[[], None]) -> None:
        self._on_async = on_async
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._decided: Optional[str] = None
        self.answer: Optional[Answer] = None

    def offer(self, answer: Answer) -> bool:
        """From the operation thread: True when the request's thread takes *answer*."""
        with self._lock:
            if self._decided is not None:
                return False
            self._decided, self.answer = "sync", answer
        self._ready.set()
        return True

    def give_up(self) -> None:
        """From the operation thread: its answer cannot come in time (the
        application wrote more than is held before it returned): the
        request answers 202 now."""
        with self._lock:
            if self._decided is None:
                self._decided = "async"
                self._on_async()
        self._ready.set()

    def wait(self, seconds: float) -> Optional[Answer]:
        """From the request's thread: the answer, or ``None`` for 202."""
        self._ready.wait(seconds)
        with self._lock:
            if self._decided is None:
                self._decided = "async"
                self._on_async()
            return self.answer


class OperationRunner:
    """Calls applications for one front door; see the module docstring.

    :param store: the :class:`~wsgiprogress.operations.OperationStore`.
    :param options: the resolved settings (``operations_url``,
        ``operations_max_wait``, ``operations_threads``, ``max_kept_response``).
    """

    def __init__(self, store: OperationStore, options: Any) -> None:
        self.store = store
        self.url: str = options["operations_url"]
        self.max_wait: float = options["operations_max_wait"]
        self.max_kept_response: int = options["max_kept_response"]
        self.pool = OperationPool(options["operations_threads"])
        self.busy_warning = RateLimitedWarning(
            "all %d operation threads busy: Prefer: respond-async not applied, the "
            "request runs as usual; raise operations_threads", WARNING_INTERVAL)
        self.full_warning = RateLimitedWarning(
            "no status monitor for a request (%s): its Prefer is not applied",
            WARNING_INTERVAL)
        self.store_warning = RateLimitedWarning(
            "the operations store failed to %s an operation; its monitor degrades",
            WARNING_INTERVAL)

    def __call__(self, app: WSGIApplication, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        if keys.OPERATION in environ:  # an outer layer runs it
            return app(environ, start_response)
        tracker = environ.get(keys.TRACKER)
        prefs = parse_prefer(str(environ.get("HTTP_PREFER", "")))
        send = environ.get(keys.INTERIM) if prefs.processing else None
        asynchronous = prefs.respond_async and prefs.wait_ok
        if asynchronous and not self.pool.reserve():
            self.busy_warning.warn(self.pool.size)
            asynchronous = False
        op_id = self._create() if asynchronous or send is not None else None
        if op_id is None:
            if asynchronous:
                self.pool.release()
            environ[keys.OPERATION] = Operation(tracker=tracker)
            return app(environ, start_response)
        operation = Operation(self.store, op_id, tracker)
        location = monitor_url(environ, self.url, op_id)
        interim = None
        if send is not None:
            interim = Interim(send, location)
            operation.listeners.append(interim.processing)
            interim.processing(operation.steps)  # on receipt, with Location
        if not asynchronous:
            environ[keys.OPERATION] = operation
            return self._processing(app, environ, start_response, operation, interim)
        try:
            op_environ = self._detach(environ, operation)
        except BaseException:  # the body could not be read: the client left
            self.pool.release()
            self._forget(op_id)
            raise
        handoff = Handoff(operation.detach)
        self.pool.start(functools.partial(self._run, app, op_environ, operation, handoff))
        wait = min(float(prefs.wait or 0), self.max_wait)
        answer = handoff.wait(wait)
        if interim is not None:
            interim.close()
        if answer is None:
            applied = "respond-async" if prefs.wait is None else \
                f"respond-async, wait={int(min(prefs.wait, self.max_wait))}"
            return self._accepted(environ, start_response, operation, location,
                                  applied + (", processing" if interim else ""))
        keep_monitor = interim is not None  # the client was told where it is
        if not keep_monitor:
            self._forget(op_id)
        return self._respond(answer, start_response, operation, keep_monitor)

    def close(self) -> None:
        self.pool.close()

    # -- the request's thread -------------------------------------------------

    def _create(self) -> Optional[str]:
        try:
            op_id = self.store.create()
        except Exception:
            self.full_warning.warn("the operations store failed", exc_info=True)
            return None
        if op_id is None:
            self.full_warning.warn("max_operations reached")
        return op_id

    def _detach(self, environ: WSGIEnvironment, operation: Operation) -> WSGIEnvironment:
        """The environ the operation thread runs the application with: the
        body read, nothing about the client's connection."""
        op_environ = dict(environ)
        for key in _CONNECTION_KEYS:
            op_environ.pop(key, None)
        op_environ["wsgi.input"] = spool_body(environ)
        op_environ[keys.OPERATION] = environ[keys.OPERATION] = operation
        return op_environ

    def _accepted(self, environ: WSGIEnvironment, start_response: StartResponse,
                  operation: Operation, location: str, applied: str) -> List[bytes]:
        data = {"id": operation.id, "state": RUNNING, "steps": operation.steps.to_dict()}
        try:
            record = self.store.get(operation.id or "")
            data = data if record is None else record.to_dict()
        except Exception:  # the operation runs on: the client still learns where to look
            self.store_warning.warn("read", exc_info=True)
        return json_body(start_response, "202 Accepted", data, [
            # the body is the monitor's representation: Content-Location says so
            ("Location", location), ("Content-Location", location),
            ("Preference-Applied", applied), ("Retry-After", "1"), ("Vary", "Prefer")],
            environ.get("REQUEST_METHOD") == "HEAD")

    def _respond(self, answer: Answer, start_response: StartResponse,
                 operation: Operation, keep_monitor: bool) -> Iterable[bytes]:
        if answer.failure is not None:
            if keep_monitor:
                self._finish(operation, None, None)
            raise answer.failure[1].with_traceback(answer.failure[2])
        if not answer.head:
            raise RuntimeError("the application returned without calling start_response")
        status, headers = answer.head
        start_response(status, headers)
        done = functools.partial(self._finish, operation, status_code(status), None) \
            if keep_monitor else None
        return HandedResponse(answer, done)

    def _processing(self, app: WSGIApplication, environ: WSGIEnvironment,
                    start_response: StartResponse, operation: Operation,
                    interim: Optional[Interim]) -> Iterable[bytes]:
        """``Prefer: processing`` alone: the application runs here, as usual."""
        status: List[str] = []

        def start(line: str, headers: List[Tuple[str, str]],
                  exc_info: Any = None) -> Callable[[bytes], object]:
            if interim is not None:
                interim.close()  # no 102 after the final head
            status[:] = [line]
            return start_response(line, headers, exc_info)
        try:
            app_iter = app(environ, start)
        except BaseException:
            self._finish(operation, None, None)
            raise
        return HandedResponse(Answer(status, KeptBody(0), None, iter(app_iter), app_iter),
                              lambda: self._finish(operation, status_code(status[0]) if status
                                                   else None, None))

    # -- the operation thread -------------------------------------------------

    def _run(self, app: WSGIApplication, environ: WSGIEnvironment, operation: Operation,
             handoff: Handoff) -> None:
        head: Head = []
        written = KeptBody(self.max_kept_response)

        def start(status: str, headers: List[Tuple[str, str]],
                  exc_info: Any = None) -> Callable[[bytes], object]:
            head[:] = [status, list(headers)]
            return write

        def write(data: bytes) -> bool:
            if written.size + len(data) > written.limit:
                handoff.give_up()  # no client gets a body cut short: a 202 instead
            return written.write(data)
        app_iter: Iterable[bytes] = ()
        try:
            app_iter = app(environ, start)
            iterator = iter(app_iter)
            first = next(iterator, None)  # a generator calls start_response now
        except BaseException:
            answer = Answer(head, written, None, iter(()), app_iter)
            answer.failure = sys.exc_info()
            _close(app_iter)
            if not handoff.offer(answer):
                log.exception("operation %s failed", operation.id)
                written.close()
                self._finish(operation, None, None)
            return
        if handoff.offer(Answer(head, written, first, iterator, app_iter)):
            return
        status: Optional[str] = None
        try:  # the request answered 202: keep the rest for the monitor
            if first is not None:
                written.write(first)
            for chunk in iterator:
                written.write(chunk)  # past max_kept_response: dropped, the app runs on
            status = head[0] if head else None
        except Exception:
            log.exception("operation %s failed", operation.id)
        finally:
            _close(app_iter)
        if status is None:
            written.close()
            self._finish(operation, None, None)
        else:
            self._finish(operation, status_code(status), KeptResponse(status, head[1], written))

    def _finish(self, operation: Operation, status: Optional[int],
                response: Optional[KeptResponse]) -> None:
        try:
            self.store.finish(operation.id or "", status, response)
        except Exception:
            self.store_warning.warn("finish", exc_info=True)
        operation.ended(status)  # after the monitor: a client told by the probe finds it done

    def _forget(self, op_id: str) -> None:
        try:
            self.store.forget(op_id)
        except Exception:
            self.store_warning.warn("forget", exc_info=True)


class HandedResponse:
    """The application's response, streamed by the request's thread: what it
    wrote, then what it yields; *done* runs after it closed."""

    def __init__(self, answer: Answer, done: Optional[Callable[[], None]]) -> None:
        self.answer = answer
        self.done = done

    def __iter__(self) -> Iterator[bytes]:
        answer = self.answer
        yield from answer.written.chunks()
        if answer.first is not None:
            yield answer.first
        yield from answer.iterator

    def close(self) -> None:
        try:
            _close(self.answer.app_iter)
        finally:
            self.answer.written.close()
            if self.done is not None:
                self.done()


def spool_body(environ: WSGIEnvironment) -> Any:
    """The request body, read to its end into a file in memory (on disk
    above :data:`SPOOL_IN_MEMORY`), positioned at its start."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY,  # noqa: SIM115
                                          prefix="wsgiprogress-body-")
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length and str(length).isdigit():
        left = int(length)
        while left > 0:
            data = stream.read(min(left, 65536))
            if not data:
                break
            spool.write(data)
            left -= len(data)
    elif "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower() \
            or environ.get("wsgi.input_terminated"):
        shutil.copyfileobj(stream, spool, 65536)
    spool.seek(0)
    return spool


def _close(app_iter: Iterable[bytes]) -> None:
    close = getattr(app_iter, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("closing an operation's response failed")
