"""
Socket feeds
============

What a WebSocket on the probe or a mailbox URL carries, without the socket:
a :class:`SocketFeed` says which waiter key wakes it, what to send each time
it is woken (text messages, and whether the feed is over), and what to do
with a text message from the client.  :mod:`wsgiprogress.server.websocket`
runs the socket (wsproto, the I/O loop); the endpoints' rules stay here, the
same as for their long-polls and event streams:

* **a mailbox** (:func:`mailbox_feed`): ``after=<id>`` resumes; without it,
  only messages posted from now on.  Each message is one text message, the
  JSON object the long-poll answers per message (``id``, ``data``, ``time``);
  a gap is its own message, ``{"gap": {...}}``, before the replay.  A text
  message ``{"data": "..."}`` from the client is published when the handshake
  carried the publish token or the ``authorize`` hook allowed ``publish``.
  A client offering Nchan's ``ws+meta.nchan`` subprotocol (``NchanSubscriber``)
  gets it: messages as Nchan frames them (:func:`wsgiprogress.web.nchan.socket_text`),
  from the oldest kept or after ``last_event_id``, and no gap message, as
  from Nchan.
* **the probe** (:func:`progress_feed`): the native JSON snapshot on every
  change until the request ends, as the progress event stream sends it.

.. code-block:: python

    feed = front.socket_feed(environ)    # None: not ours; a callable: refused
    texts, over = feed.collect()
"""
from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Callable, List, NamedTuple, Optional, Tuple, Union

from ..mailbox.store import MailboxError, MessageTooLarge
from ..progress.ids import ID_RULE, is_valid_id
from ..query import query_params
from . import nchan
from .cursors import BadRequest, gap
from .mailbox import refused
from .probe import ProbeRequestError
from .responses import has_bearer_token, plain

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

    from .mailbox import MailboxApp
    from .probe import ProgressProbe
    from .waiting import Answer


#: Messages a mailbox socket reads at once: a backlog goes out in batches as
#: the client drains them.
BATCH = 16


class FeedError(ValueError):
    """A client message the feed refuses; ``code`` is the close code (RFC 6455 §7.4)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class SocketFeed(NamedTuple):
    """One WebSocket's traffic (see the module docstring)."""

    key: str                                            #: its waiter key
    #: texts to send now (none: nothing new), and whether the feed is over
    collect: Callable[[], Tuple[List[str], bool]]
    receive: Optional[Callable[[str], None]]            #: a client text; None: read-only
    subprotocol: Optional[str] = None                   #: the one to accept, offered


def _answer(status: str, reason: str) -> Answer:
    return functools.partial(plain, status=status, reason=reason)


def mailbox_feed(app: MailboxApp, environ: WSGIEnvironment) -> Union[SocketFeed, Answer]:
    """The feed of a WebSocket on a mailbox URL, or the answer that refuses it."""
    name = environ.get("PATH_INFO", "")[len(app.prefix):]
    try:
        if not is_valid_id(name):
            raise BadRequest(f"invalid mailbox name: expected {ID_RULE}")
        if not app.authorize(environ, name, "read"):
            return _answer("403 Forbidden", "not allowed to read this mailbox")
        params = query_params(environ.get("QUERY_STRING", ""))
        as_nchan = nchan.offers_subprotocol(environ)
        after = nchan.last_event_id(environ, params)
        if after is None and not as_nchan:  # only what is posted from now on
            after = app.store.read(name, None, app.store.max_messages).cursor
    except (BadRequest, ValueError) as exc:
        return _answer("400 Bad Request", str(exc))
    except MailboxError as exc:
        return refused(exc)
    follow = app.follow(name, after, BATCH)

    def collect() -> Tuple[List[str], bool]:
        result = follow()
        if as_nchan:
            return [nchan.socket_text(message) for message in result.messages], False
        missed = gap(result)
        texts = [] if missed is None else [json.dumps({"gap": missed})]
        texts.extend(json.dumps(message._asdict()) for message in result.messages)
        return texts, False

    publishes = app.publish_enabled and (has_bearer_token(environ, app.token)
                                         or app.authorize(environ, name, "publish"))

    def receive(text: str) -> None:
        try:
            data = json.loads(text)["data"]
        except (ValueError, TypeError, KeyError, RecursionError):  # nested past the parser
            raise FeedError(1007, 'expected {"data": "<text>"}') from None
        if not isinstance(data, str):
            raise FeedError(1007, "data must be a string")
        try:
            app.store.post(name, data)
        except MessageTooLarge as exc:
            raise FeedError(1009, str(exc)) from None
        except MailboxError as exc:
            raise FeedError(1011, str(exc)) from None
    return SocketFeed(name, collect, receive if publishes else None,
                      nchan.SUBPROTOCOL if as_nchan else None)


def progress_feed(probe: ProgressProbe, environ: WSGIEnvironment) -> Union[SocketFeed, Answer]:
    """The feed of a WebSocket on the probe URL, or the answer that refuses it."""
    try:
        query = probe.parse(environ)
    except ProbeRequestError as exc:
        return _answer("400 Bad Request", str(exc))
    if probe.authorize is not None and not probe.authorize(environ, query.progress_id,
                                                           "progress"):
        return _answer("403 Forbidden", "not allowed to read this progress")
    probe.store.watch(query.progress_id)
    snapshots = probe.snapshots(query)

    def collect() -> Tuple[List[str], bool]:
        text, over = snapshots()
        return ([] if text is None else [text]), over
    return SocketFeed(query.progress_id, collect, None)
