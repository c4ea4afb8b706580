"""
Parking
=======

A request that waits — a long-poll, an event stream — is *parked* on the
I/O loop instead of holding a worker thread.  Its response is a
:class:`~wsgiprogress.web.waiting.WaitingResponse` that registered a
:class:`Parking` as its wake (``environ["wsgiprogress.park"]``, given by
:meth:`ProgressTask.park <wsgiprogress.server.task.ProgressTask.park>`).
When a step finds nothing to send, the response raises
:class:`~wsgiprogress.waiters.Parked`; the channel leaves the request at
the head of its queue, the thread returns to its pool, and :class:`Parking`
takes over:

* ``set()`` (from whatever thread posted) hands :meth:`Parking.step` to the
  loop (:meth:`Loop.call_soon <wsgiprogress.server.loop.Loop.call_soon>`);
* a timer on the loop steps it at the response's ``wake_at`` (the long-poll's
  deadline, the event stream's next keepalive);
* a step runs the task again on the loop — or, when the stores block
  (Redis), on the probe lane — and writes what the response has now;
* a step waits while the connection's output is backed up (a slow reader of
  an event stream), and runs when it drains;
* the connection's close releases the response's waiter slot at once.

All state changes happen on the loop's thread, so they need no lock.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from .loop import Loop

if TYPE_CHECKING:
    from .loop import Timer


def park(task: Any) -> Parking:
    """The wake of *task*'s response, which may now park it: what
    ``environ["wsgiprogress.park"]`` gives (the task is a
    :class:`~wsgiprogress.server.task.ProgressTask` or a mailbox's answer
    made on the loop, :mod:`~wsgiprogress.server.loop_mailbox`)."""
    parking = task.channel.parking = Parking(task)
    return parking


def answered(task: Any) -> None:
    """*task* ended without parking: the :class:`Parking` it made for a
    wait that did not happen (an answer at once, the waiter cap) goes."""
    channel = task.channel
    parking = channel.parking
    if parking is not None and parking.task is task and task.waiting is None:
        parking.gone = True
        channel.parking = None


class Parking:
    """The wake and the schedule of one parked request (see the module docstring)."""

    # slots: one of these lives as long as its waiter, and a dict each would
    # add a few hundred bytes to every parked connection
    __slots__ = ("task", "channel", "loop", "stepping", "woken", "pending", "gone", "timer")

    def __init__(self, task: Any) -> None:  # a task of a module that imports this one
        self.task = task
        self.channel: Any = task.channel
        self.loop: Loop = self.channel.server.progress_loop
        self.stepping = True   # the first step runs now, where the request runs
        self.woken = False     # set() came during a step
        self.pending = False   # a call to _woken is queued on the loop
        self.gone = False      # the connection closed
        self.timer: Optional[Timer] = None

    def set(self) -> None:
        """News for this request; callable from any thread."""
        if not self.pending:
            self.pending = True
            self.loop.call_soon(self._woken)

    def clear(self) -> None:
        """Nothing to clear: a parked response looks once per step."""

    def _woken(self) -> None:
        self.pending = False
        if self.stepping:
            self.woken = True  # look again when this step parks
        else:
            self.step()

    def parked(self) -> None:
        """The step found nothing to send; called on the thread that ran it."""
        if self.loop.on_loop():
            self._settle()
        else:
            self.loop.call_soon(self._settle)

    def _settle(self) -> None:
        self.stepping = False
        response = self.task.waiting
        if self.gone:
            self.finished()
            return
        if self.woken:
            self.woken = False
            self.loop.call_soon(self.step)
        elif response is not None:
            self.timer = self.loop.call_at(response.wake_at, self.step)
        channel = self.channel
        if not channel.adj.channel_request_lookahead:
            # waitress reads nothing while a request is queued: watch for the
            # client leaving (an EOF) while this one waits
            channel.readable = channel.readable_while_parked
        if not (channel.will_close or channel.close_when_flushed):
            channel.go_quiet()  # until its socket or its wake says otherwise

    def step(self) -> None:
        """Run the request's task once more, without blocking the loop."""
        if self.gone or self.stepping:
            return
        Loop.cancel(self.timer)
        self.timer = None
        channel = self.channel
        channel.stir()
        channel.__dict__.pop("readable", None)
        if channel.total_outbufs_len > channel.adj.outbuf_high_watermark // 2:
            channel.after_drain = self.step  # a slow reader: send more once it drained
            return
        self.stepping = True
        if channel.server.progress_blocking:
            channel.server.task_dispatcher.probe_lane.add_task(channel)
        else:
            channel.serve_on_loop()

    def release(self) -> None:
        """The connection closed: give the waiter slot back now (or when the
        step that runs ends)."""
        self.gone = True
        Loop.cancel(self.timer)
        self.timer = None
        if not self.stepping:
            self.finished()

    def finished(self) -> None:
        """The response is over or its client left: give the slot back, and
        let go of the task, its response and its request (they refer to each
        other: reference counting then frees them, not the garbage collector)."""
        self.gone = True
        task = self.task
        response = task.waiting
        if response is not None:
            response.release()
            task.waiting = None
        if self.channel.parking is self:
            self.channel.parking = None
