"""
Nchan's long-poll protocol
==========================

``GET <mailbox_url>/<name>?protocol=nchan`` reads a mailbox as Nchan's
long-poll subscribers do, so Nchan's ``NchanSubscriber`` works unchanged: the
cursor travels as the previous answer's ``Etag`` (sent back as
``If-None-Match``) and ``Last-Modified`` (``If-Modified-Since``; the epoch
means "no cursor"); each answer holds one message, and a timeout is ``408``
(``304`` when the client asked not to wait, ``wait=0``: Nchan's interval-poll).
A client resuming from a message id it kept (``NchanSubscriber``'s
``reconnect`` and ``id`` options) sends it as ``<time>:<id>``, the form its
``lastMessageId`` takes, in an ``Etag`` request header or ``last_event_id``:
:func:`message_id` reads that form too.

Its WebSocket transport offers the ``ws+meta.nchan`` subprotocol
(:data:`SUBPROTOCOL`): each message is then :func:`socket_text`, an ``id:``
and a ``content-type:`` line before the data.
"""
from __future__ import annotations

import json
from email.utils import formatdate, parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from .cursors import BadRequest, cursor, gap
from .responses import NO_CACHE_HEADERS, plain, respond

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from ..mailbox.store import Message, ReadResult
    from .waiting import Answer

#: The WebSocket subprotocol of Nchan's subscribers.
SUBPROTOCOL = "ws+meta.nchan"
CONTENT_TYPE = "text/plain; charset=utf-8"
#: A cursor no mailbox ever issued: a read after it is every kept message and
#: ``unknown_cursor`` (:func:`~wsgiprogress.mailbox.store.select`).
UNKNOWN_CURSOR = -1


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
    return message_id(etag.strip().strip('"') if etag else None, "If-None-Match")


def message_id(value: Optional[str], what: str) -> Optional[int]:
    """The cursor in *value*: a message id, or Nchan's ``<time>:<id>`` (what
    ``NchanSubscriber`` makes of an answer's ``Last-Modified`` and ``Etag``).

    :raises BadRequest: for anything else.
    """
    if value and ":" in value:
        seconds, _, value = value.partition(":")
        if not seconds.isdigit():
            raise BadRequest(f"invalid {what}: expected a message id or <time>:<id>")
    return cursor(value, what)


def last_event_id(environ: Dict[str, Any], params: Dict[str, str]) -> Optional[int]:
    """Where an event stream or a WebSocket resumes: ``Last-Event-ID``, else
    the ``last_event_id`` query argument (Nchan's and Mercure's, for clients
    that cannot send the header), else ``after``.

    A header that holds no id of ours is an unknown cursor (every kept
    message and a gap), not a 400: a browser resends what an earlier stream
    at this URL set (another server's, say), and a 400 would end its
    ``EventSource`` for good.

    :raises BadRequest: for a query argument that holds no id of ours.
    """
    header = environ.get("HTTP_LAST_EVENT_ID")
    if header:
        try:
            return message_id(header, "Last-Event-ID")
        except BadRequest:
            return UNKNOWN_CURSOR
    return message_id(params.get("last_event_id") or params.get("after"), "Last-Event-ID")


def offers_subprotocol(environ: Dict[str, Any]) -> bool:
    """True when a WebSocket handshake offers :data:`SUBPROTOCOL`."""
    offered = str(environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL", ""))
    return SUBPROTOCOL in (token.strip() for token in offered.split(","))


def socket_text(message: Message) -> str:
    """*message* as a ``ws+meta.nchan`` text message."""
    return f"id: {message.id}\ncontent-type: {CONTENT_TYPE}\n\n{message.data}"


def polled(reply: Callable[[ReadResult], Answer], result: ReadResult, as_nchan: bool,
           start_response: StartResponse) -> List[bytes]:
    """The answer to a poll that does not wait: *reply*, or for Nchan's
    client with nothing new ``304 Not Modified`` (with the gap, if any)."""
    if not as_nchan or result.messages:
        return reply(result)(start_response)
    missed = gap(result)
    headers = [] if missed is None else [("X-Mailbox-Gap", json.dumps(missed))]
    # no Content-Length: a 304's would have to be the 200's (RFC 9110 §8.6)
    start_response("304 Not Modified", [*NO_CACHE_HEADERS, *headers])
    return []


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
    return respond(start_response, "200 OK", CONTENT_TYPE,
                   message.data.encode("utf-8"), headers, head_only)
