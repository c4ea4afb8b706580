"""
Waiting responses
=================

A :class:`WaitingResponse` is the body of an answer that waits for news: a
:class:`LongPoll` or an :class:`~wsgiprogress.web.event_stream.EventStream`.
It is written without I/O: :meth:`WaitingResponse.step` looks once, without
blocking, and says what to send now, whether the answer is over, and when to
look again even if nothing happens.  Two drivers run the same steps:

* **a thread** (the middleware under werkzeug or gunicorn, plain waitress):
  iterating the response waits on its :class:`threading.Event` between steps;
  the thread is held while the client waits.
* **the I/O loop** of :mod:`wsgiprogress.server`, whose environ carries
  :data:`wsgiprogress.keys.PARK`: the response registers the server's wake
  instead of an event, and when a step finds nothing to send it raises
  :class:`~wsgiprogress.waiters.Parked`.  The server keeps the connection
  with no thread and iterates the response again when the wake is set or
  ``wake_at`` comes (:mod:`wsgiprogress.server.parking`).

.. code-block:: python

    wake = open_wake(waiters, key, environ)
    if wake is None:
        return too_many_waiters(start_response)
    return LongPoll(waiters, key, wake, environ, start_response,
                    check=lambda: answer_if_news(), timeout=answer_now, seconds=wait)

where ``answer_if_news()`` returns ``None`` or a function that starts the
response and returns its body, as a WSGI application would.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Callable, Iterator, List, NamedTuple, Optional

from .. import keys
from ..waiters import ClientWatch, Parked

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from ..waiters import Waiters, Wake

#: A finished answer: starts the response with the given ``start_response``
#: and returns the body, as a WSGI application does.
Answer = Callable[["StartResponse"], List[bytes]]


class Step(NamedTuple):
    """What one look found."""

    data: bytes      #: to send now (may be empty)
    over: bool       #: the answer is complete
    wake_at: float   #: when to look again without news (``time.monotonic``)


def open_wake(waiters: Waiters, key: str, environ: WSGIEnvironment) -> Optional[Wake]:
    """Register a waiter for *key*: the server's wake when it parks waiting
    requests, else a :class:`threading.Event`; ``None`` at the waiter cap."""
    park = environ.get(keys.PARK)
    return waiters.register(key, park() if park is not None else None)


class WaitingResponse:
    """The body of an answer that waits; subclasses define :meth:`step`.

    It gives its waiter slot back in :meth:`close`, which servers call even
    when they never iterated.
    """

    #: True while parked: waitress's own ``close()`` after :class:`Parked`
    #: must not end the response; :meth:`release` does.
    suspended = False
    #: When the parked response wants to look again without news.
    wake_at = 0.0

    def __init__(self, waiters: Waiters, key: str, wake: Wake,
                 environ: WSGIEnvironment) -> None:
        self.waiters = waiters
        self.key = key
        self.wake = wake
        self.parks = not isinstance(wake, threading.Event)
        # only a thread watches its client; a parked response is told by the server
        self.client = None if self.parks else ClientWatch(environ)
        self.over = False
        self.closed = False

    def step(self, now: float, give_up: bool = False) -> Step:
        """Look once, without blocking; *give_up*: the client left or the
        server stops, finish now."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        give_up = False
        while not self.over and not self.closed:
            if not self.parks:
                self.wake.clear()  # type: ignore[attr-defined]  # before looking
            step = self.step(time.monotonic(), give_up)
            self.over = step.over
            if step.data:
                return step.data
            if step.over:
                break
            if self.parks:
                self.wake_at = step.wake_at
                self.suspended = True
                raise Parked(self)
            event: threading.Event = self.wake  # type: ignore[assignment]
            client = self.client
            assert client is not None
            if not client.wait(event, step.wake_at - time.monotonic()):
                give_up = client.gone()
        raise StopIteration

    def close(self) -> None:
        if not self.suspended:
            self.release()

    def release(self) -> None:
        """Give the waiter slot back (the server calls this for a parked
        response that ends or whose client left)."""
        self.suspended = False
        if not self.closed:
            self.closed = True
            self.waiters.unregister(self.key, self.wake)


class LongPoll(WaitingResponse):
    """Answers once: what *check* returns as soon as it returns something,
    or what *timeout* returns after *seconds*.

    :param check: ``None`` while there is nothing to answer, else the answer.
    :param timeout: the answer when the time is up or the client left.
    """

    def __init__(self, waiters: Waiters, key: str, wake: Wake, environ: WSGIEnvironment,
                 start_response: StartResponse, check: Callable[[], Optional[Answer]],
                 timeout: Callable[[], Answer], seconds: float) -> None:
        super().__init__(waiters, key, wake, environ)
        self.start_response = start_response
        self.check = check
        self.timeout = timeout
        self.deadline = time.monotonic() + seconds

    def step(self, now: float, give_up: bool = False) -> Step:
        answer = self.check()
        if answer is None:
            if not give_up and now < self.deadline:
                return Step(b"", False, self.deadline)
            answer = self.timeout()
        return Step(b"".join(answer(self.start_response)), True, now)
