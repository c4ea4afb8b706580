"""
Environ keys
============

Every ``wsgiprogress.*`` key that a front door puts in the WSGI environ, for
the application and for the layers inside it.

.. code-block:: python

    from wsgiprogress import keys

    def upload(environ, start_response):
        tracker = environ.get(keys.TRACKER)      # None when untracked
        mailboxes = environ.get(keys.MAILBOX)    # when mailboxes are served
"""
from __future__ import annotations

#: The request's :class:`~wsgiprogress.progress.tracker.Tracker`, when tracked.
TRACKER = "wsgiprogress.tracker"
#: The progress store that tracks requests (the outermost layer's: our
#: server's when it counts).
PROGRESS_STORE = "wsgiprogress.progress_store"
#: The same store under the name it had before 0.2; read :data:`PROGRESS_STORE`.
LEGACY_TABLE = "wsgiprogress.table"
#: The mailbox store served next to the application.
MAILBOX = "wsgiprogress.mailbox"
#: Set by a server that counts request and response bytes itself; a
#: middleware inside it then leaves the request alone.
SERVER_COUNTS = "wsgiprogress.server_counts"
#: ``environ[DEPARTURE](event)`` sets *event* when the client's connection
#: closes and returns the function that stops watching;
#: :mod:`wsgiprogress.server` provides it.
DEPARTURE = "wsgiprogress.departure"
#: ``environ[PARK]()`` returns the wake of a request that may be parked on
#: the I/O loop of :mod:`wsgiprogress.server` instead of holding a thread
#: while it waits (:mod:`wsgiprogress.web.waiting`); absent elsewhere.
PARK = "wsgiprogress.park"
#: ``environ[UPGRADE](feed, waiters, environ, start_response)`` accepts a
#: WebSocket for one of our endpoints (:mod:`wsgiprogress.server.websocket`);
#: set by our server with ``websocket`` on, for a request that asks for one.
UPGRADE = "wsgiprogress.upgrade"
#: On :mod:`wsgiprogress.server` with ``websocket`` on, the
#: :class:`~wsgiprogress.server.handoff.Handoff` of a WebSocket upgrade that
#: goes to the application (which finds the socket in ``werkzeug.socket``).
HANDOFF = "wsgiprogress.handoff"
#: The request's :class:`~wsgiprogress.operations.Operation` when operations
#: are on: ``.cancelled`` and ``.report(done, total, label)``.
OPERATION = "wsgiprogress.operation"
#: ``environ[INTERIM](status, headers)`` sends an interim (1xx) response
#: before the final one; :mod:`wsgiprogress.server` provides it to HTTP/1.1
#: clients only.
INTERIM = "wsgiprogress.interim"
#: A completed resumable upload, in the request the application finally sees:
#: ``{"id", "metadata", "size", "path", "protocol", "progress_id"}``
#: (:mod:`wsgiprogress.resumable`).
UPLOAD = "wsgiprogress.upload"
#: Set by :mod:`wsgiprogress.server` on an append to a resumable upload whose
#: body it wrote into the upload directory as it arrived
#: (:class:`wsgiprogress.resumable.parts.StoredPart`); ``wsgi.input`` reads
#: the same bytes.
STORED_PART = "wsgiprogress.stored_part"
#: With a progress store several hosts share, the tracker of the resumable
#: upload a request counts into (:mod:`wsgiprogress.web.upload_progress`),
#: handed over when the request ends.
UPLOAD_TRACKER = "wsgiprogress.upload_tracker"
