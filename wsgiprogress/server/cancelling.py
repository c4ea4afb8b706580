"""
Cancelled uploads
=================

When an upload in flight on our server is cancelled (``DELETE`` on the probe,
``store.cancel(id)``), :func:`answer_cancelled` ends its connection on the
I/O loop without reading another byte of the body:

.. code-block:: text

    HTTP/1.1 409 Conflict
    Content-Type: text/plain; charset=utf-8
    Content-Length: 17
    Connection: close

    upload cancelled

then a half-close (the client sees FIN at once), and the socket is kept,
unread, for :data:`LINGER` seconds before it is closed.

Why an answer: a browser whose upload is cut *without* one on a reused
keep-alive connection takes the cut for a stale connection and sends the
whole request again (Chromium's ``ShouldResendRequest``), so the upload would
start over under its ID.  So an upload whose body is all in, and whose
application runs, is answered too, as long as nothing of its response was
written (the application would get the whole upload a second time).
Why the linger: a client still sending its body reads no answer until its
send fails; the close that ends the linger resets the connection, and
browsers read an answer that came before a reset during an upload
(Chromium's ``ShouldTryReadingOnUploadError``).  Closing at once would reset
the connection while the answer may still be in flight.

The waitress channel closes as before (its request ends ``error``/
``cancelled``, its descriptor leaves the map); a duplicate descriptor of the
socket stays in the map as a :class:`Lingering` dispatcher, which counts as a
connection (``connection_limit`` bounds them) and closes when its time is up
or when the client closes too, whichever comes first.
"""
from __future__ import annotations

import socket
import time
from typing import Any

from waitress import wasyncore

from ..progress.entry import CANCELLED

#: What a cancelled upload is answered.
ANSWER = (b"HTTP/1.1 409 Conflict\r\n"
          b"Content-Type: text/plain; charset=utf-8\r\n"
          b"Content-Length: 17\r\n"
          b"Connection: close\r\n\r\n"
          b"upload cancelled\n")

#: Seconds a cancelled connection is kept, half-closed and unread, after its answer.
LINGER = 1.0


class Lingering(wasyncore.dispatcher):  # type: ignore[misc]
    """A half-closed socket kept in the server's map, never read nor written,
    until :data:`LINGER` seconds are up or the client closes (``POLLHUP``)."""

    def readable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def handle_close(self) -> None:
        self.close()


def answer_cancelled(channel: Any) -> None:
    """Answer and close *channel*, a
    :class:`~wsgiprogress.server.channel.ProgressChannel` whose upload was
    cancelled (loop thread).  The upload may still be arriving, or be in
    service (its body is in, the application runs): answered as long as
    nothing of its response was written.  A connection with output of its
    own still going out, or another request in service, is closed without
    an answer: nothing may be written in the middle of another response.
    The check and the close hold ``outbuf_lock``, so the application's
    first write comes after the close (and raises ``ClientDisconnected``).
    A connection whose cancelled request is gone by then (its response went
    out whole, as the cancel came) is left open and read again: the next
    request on it is another's."""
    with channel.outbuf_lock:
        if not channel.connected:
            return
        if not (_cancelled(channel.request) or any(map(_cancelled, channel.requests))):
            # its request ended as the cancel came: what follows is another's
            channel.upload_cancelled = False
            return
        kept = None
        if not channel.total_outbufs_len and _unanswered(channel):
            try:
                kept = channel.socket.dup()  # keeps the connection open past the close
            except OSError:
                pass
        # closed, its request ended, before the client can hear of it
        channel.handle_close()
    if kept is not None and _answered(kept):
        lingering = Lingering(kept, channel._map)
        channel.server.progress_loop.call_at(time.monotonic() + LINGER, lingering.close)


def _unanswered(channel: Any) -> bool:
    """True when the cancelled upload, which is on *channel*, may be
    answered there: its body is still arriving (the parser's request, none
    in service), or it is the one request in service and its task has not
    begun, or its response head was not made (its send window is not
    :attr:`~wsgiprogress.server.sending.SendWindow.headed`; a window sent in
    full is gone).  Not the tracker's status: a tracker ended by the cancel
    records no head made after it."""
    requests = channel.requests
    if not requests:
        return True
    request = requests[0]
    if len(requests) != 1 or not _cancelled(request):
        return False
    if not request.serviced:
        return True
    return any(window.tracker is request.tracker and not window.headed
               for window in channel.send_windows)


def _cancelled(request: Any) -> bool:
    """True for a waitress *request* whose tracker was cancelled."""
    tracker = getattr(request, "tracker", None)
    return tracker is not None and tracker.reason == CANCELLED


def _answered(kept: socket.socket) -> bool:
    """Answer on *kept* and half-close it; False (and closed) when it failed."""
    try:
        kept.send(ANSWER)  # small, into an empty send buffer
        kept.shutdown(socket.SHUT_WR)
    except OSError:
        kept.close()
        return False
    return True
