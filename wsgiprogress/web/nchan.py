"""
Nchan's long-poll protocol
==========================

``GET <mailbox_url>/<name>?protocol=nchan`` reads a mailbox as Nchan's
long-poll subscribers do, so Nchan's ``NchanSubscriber`` works unchanged: the
cursor travels as the previous answer's ``Etag`` (sent back as
``If-None-Match``) and ``Last-Modified`` (``If-Modified-Since``; the epoch
means "no cursor"); each answer holds one message, and a timeout is ``408``.
"""
from __future__ import annotations

import json
from email.utils import formatdate, parsedate_to_datetime
from typing import TYPE_CHECKING, List, Optional

from .cursors import BadRequest, cursor, gap
from .responses import plain, respond

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from ..mailbox.store import ReadResult


def read_cursor(environ: WSGIEnvironment) -> Optional[int]:
    """The cursor of Nchan's long-poll client: the previous answer's Etag,
    unless If-Modified-Since is the epoch (Nchan's "no cursor").

    :raises BadRequest: for a date or an Etag that is not one of ours.
    """
    since = environ.get("HTTP_IF_MODIFIED_SINCE")
    if since:
        try:
            if parsedate_to_datetime(since).timestamp() <= 0:
                return None
        except (TypeError, ValueError):
            raise BadRequest("invalid If-Modified-Since") from None
    etag = environ.get("HTTP_IF_NONE_MATCH") or environ.get("HTTP_ETAG")
    return cursor(etag.strip().strip('"') if etag else None, "If-None-Match")


def answer(start_response: StartResponse, result: ReadResult,
           head_only: bool) -> List[bytes]:
    """One message with its ``Etag`` and ``Last-Modified``, or ``408``."""
    missed = gap(result)
    headers = [("Vary", "If-None-Match, If-Modified-Since")]
    if missed is not None:
        headers.append(("X-Mailbox-Gap", json.dumps(missed)))
    if not result.messages:
        return plain(start_response, "408 Request Timeout", "no message yet", headers,
                     head_only)
    message = result.messages[0]
    headers += [("Etag", str(message.id)),
                ("Last-Modified", formatdate(message.time, usegmt=True))]
    return respond(start_response, "200 OK", "text/plain; charset=utf-8",
                   message.data.encode("utf-8"), headers, head_only)
