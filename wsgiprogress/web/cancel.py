"""
Cancelling an upload
====================

``DELETE <progress_url>?X-Progress-ID=<id>`` cancels the running request of
that ID (:meth:`~wsgiprogress.progress.store.ProgressStore.cancel`), what
PHP's ``cancel_upload`` does: our server reads no more of it, answers it
``409 Conflict`` and closes its connection (:mod:`wsgiprogress.server.cancelling`), under
the middleware the application's next read raises the error a client that
leaves causes, and the entry ends ``error`` with reason ``cancelled``.  It
needs ``Authorization: Bearer <publish_token>`` or the ``authorize`` hook's
approval for action ``"cancel"``; the probe answers ``DELETE`` only when one
of them is configured.

.. code-block:: console

    $ curl -X DELETE -H "Authorization: Bearer $TOKEN" \\
          "http://127.0.0.1:8080/progress?X-Progress-ID=$ID"
    {"id": "...", "state": "error", "reason": "cancelled"}

Answers: 200 cancelled (the request ran in this process and has ended), 404
when no request of that ID runs (unknown, or ended), 400 for a bad ID, 403
without permission, 503 when Redis cannot be asked.  With Redis, a request
that runs in another process is told on ``<key_prefix>cancel`` and stops
there; this process cannot know that it heard (it may have died, or be
reconnecting), so the answer is ``202 Accepted`` ``{"id": "...", "cancel":
"sent to the process that runs it"}`` and the probe shows the end.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Tuple

from ..progress.entry import CANCELLED, ERROR
from ..progress.store import BackendUnavailable
from .responses import has_bearer_token, json_body, plain

#: What a ``202`` says: the request runs in another process, which was told.
SENT = "sent to the process that runs it"

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from ..progress.store import ProgressStore
    from .mailbox import Authorize


def cancel(environ: WSGIEnvironment, start_response: StartResponse, store: ProgressStore,
           progress_id: str, authorize: Optional[Authorize], token: Optional[str],
           headers: List[Tuple[str, str]]) -> List[bytes]:
    """Answer a ``DELETE`` for the valid *progress_id*: allowed by *token* or
    *authorize*; *headers* go with the answer (CORS)."""
    if not (has_bearer_token(environ, token) or
            (authorize is not None and authorize(environ, progress_id, "cancel"))):
        reason = "not allowed to cancel this upload" if token is None else \
            "cancelling needs the bearer token"
        return plain(start_response, "403 Forbidden", reason, headers)
    tracker = store.running_here(progress_id)
    if tracker is not None and tracker.cancel():
        return json_body(start_response, "200 OK",
                         {"id": progress_id, "state": ERROR, "reason": CANCELLED}, headers)
    try:
        sent = store.cancel(progress_id)  # running in another process, if anywhere
    except BackendUnavailable:
        return plain(start_response, "503 Service Unavailable",
                     "the progress backend is unavailable; retry shortly",
                     [*headers, ("Retry-After", "2")])
    if not sent:
        return plain(start_response, "404 Not Found",
                     "no request with this progress ID is running", headers)
    return json_body(start_response, "202 Accepted",
                     {"id": progress_id, "cancel": SENT}, headers)
