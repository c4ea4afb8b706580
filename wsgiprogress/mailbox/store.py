"""
Mailboxes
=========

A mailbox is a named, bounded queue of messages for one client.  The
application posts to one or many mailboxes whether or not their clients are
connected; a client reads every message after its cursor, now or when it
comes back.  Each mailbox numbers its messages with a dense integer sequence
(n+1, n+2, … from a random start; no clocks), so a client always knows whether
it missed something: a read reports how many messages after its cursor were
already dropped, or that the cursor is unknown (the mailbox expired and
started again).  A client's first read passes no cursor.

.. code-block:: python

    from wsgiprogress.mailbox import MemoryMailboxes

    mailbox = MemoryMailboxes(max_messages=100, mailbox_ttl=300)
    mailbox.post(["alice-3f2a…", "bob-9c1d…"], '{"text": "hello"}')
    result = mailbox.read("alice-3f2a…", after=0)
    result.messages[0].id, result.cursor, result.dropped

Bounds (:data:`wsgiprogress.settings.MAILBOX_LIMITS`): messages, bytes and
age per mailbox, the number of mailboxes, the size of one message; a mailbox
nobody has read for ``mailbox_ttl`` seconds is removed.  This module holds
the interface and what every store shares; :mod:`~wsgiprogress.mailbox.memory`
keeps mailboxes in memory, :mod:`wsgiprogress.backends.redis.mailbox` in Redis.
"""
from __future__ import annotations

import abc
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from ..errors import ProgressError
from ..settings import MAILBOX_LIMITS, check_mailbox_limits, resolve
from ..waiters import Waiters

#: Least recently read mailboxes examined for an empty one to remove when full.
EVICTION_SCAN = 16


class MailboxError(ProgressError):
    """A mailbox bound was reached; ``status`` is the HTTP answer it deserves."""

    status = 503


class MessageTooLarge(MailboxError):
    status = 413


class TooManyMailboxes(MailboxError):
    status = 503


class Message(NamedTuple):
    """One message: its ``id`` in its mailbox, ``data`` and ``time`` (epoch s)."""

    id: int
    data: str
    time: float


class ReadResult(NamedTuple):
    """What a read returns.

    ``cursor`` is the ``after`` to use next.  ``dropped`` counts messages after
    the requested cursor that are no longer kept; ``unknown_cursor`` is true
    when the cursor is beyond anything the mailbox issued (it expired and
    started again), in which case ``messages`` starts from the oldest kept.
    """

    messages: List[Message]
    cursor: int
    dropped: int
    unknown_cursor: bool


class MailboxStore(abc.ABC):
    """Where mailboxes live; implementations must be thread-safe.

    ``waiters`` is this process's :class:`~wsgiprogress.waiters.Waiters`: a
    store wakes the waiters of a mailbox whenever a message reaches it.
    Its bounds are the settings of :data:`~wsgiprogress.settings.MAILBOX_LIMITS`,
    set by :meth:`_set_limits`.
    """

    clock: Callable[[], float]
    waiters: Waiters
    #: True for a store whose reads may block (Redis): wsgiprogress's server
    #: then reads it off its I/O loop.
    shared = False
    max_messages: int
    max_bytes: int
    max_message_bytes: int
    max_age: float
    max_mailboxes: int
    mailbox_ttl: float

    def _set_limits(self, given: Mapping[str, Any]) -> None:
        """Resolve and keep the bounds *given* by name (defaults for the rest).

        :raises ConfigurationError: for an unknown name or a bad value.
        """
        options = resolve(MAILBOX_LIMITS, given)
        check_mailbox_limits(options)
        for name, value in options.items():
            setattr(self, name, value)

    @abc.abstractmethod
    def post(self, names: Union[str, Iterable[str]], data: str) -> Dict[str, int]:
        """Append *data* to each named mailbox (created if missing).

        :returns: the new message's id in each mailbox.
        :raises MessageTooLarge: when *data* is over the message size bound.
        :raises TooManyMailboxes: when a mailbox would have to be created
            beyond the bound; nothing is posted then.
        """

    @abc.abstractmethod
    def read(self, name: str, after: Optional[int], limit: int = 100) -> ReadResult:
        """Messages of *name* after *after* (``None``: from the oldest kept).

        Reading counts as the client's visit: it creates the mailbox and
        restarts its ``mailbox_ttl``.
        """

    @abc.abstractmethod
    def stats(self) -> Dict[str, int]:
        """Counts for operators: mailboxes, messages, posted, dropped."""


def post_targets(names: Union[str, Iterable[str]], data: str,
                 max_message_bytes: int) -> Tuple[List[str], int]:
    """The distinct mailboxes of a post, in order, and the size of its *data*
    in bytes: what every store checks first.

    :raises MessageTooLarge: when *data* is over *max_message_bytes*.
    """
    size = len(data.encode("utf-8"))
    if size > max_message_bytes:
        raise MessageTooLarge(f"message of {size} bytes is over the "
                              f"{max_message_bytes}-byte limit")
    return ([names] if isinstance(names, str) else list(dict.fromkeys(names))), size


def select(messages: Sequence[Message], base: int, last_id: int, after: Optional[int],
           limit: int) -> ReadResult:
    """The read after *after* of a mailbox that holds *messages* and issued
    the ids after *base* up to *last_id*: what every store answers."""
    first_kept = messages[0].id if messages else last_id + 1
    if after is not None and not base <= after <= last_id:
        chosen = list(messages)[:limit]
        return ReadResult(chosen, _cursor(chosen, last_id), 0, True)
    start = 0 if after is None else after
    dropped = max(0, first_kept - start - 1) if after is not None else 0
    skip = max(0, start - first_kept + 1)
    chosen = [messages[i] for i in range(skip, min(len(messages), skip + limit))]
    return ReadResult(chosen, _cursor(chosen, max(start, first_kept - 1)), dropped, False)


def _cursor(chosen: List[Message], otherwise: int) -> int:
    return chosen[-1].id if chosen else otherwise
