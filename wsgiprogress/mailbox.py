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

    from wsgiprogress.mailbox import Mailbox

    mailbox = Mailbox(max_messages=100, mailbox_ttl=300)
    mailbox.post(["alice-3f2a…", "bob-9c1d…"], '{"text": "hello"}')
    result = mailbox.read("alice-3f2a…", after=0)
    result.messages[0].id, result.cursor, result.dropped

Bounds: messages, bytes and age per mailbox, the number of mailboxes, the size
of one message; a mailbox nobody has read for ``mailbox_ttl`` seconds is
removed.
"""
from __future__ import annotations

import abc
import collections
import itertools
import secrets
import threading
import time
from typing import (
    Callable,
    Deque,
    Dict,
    Iterable,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from .errors import ProgressError
from .waiters import Waiters

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
    """

    clock: Callable[[], float]
    waiters: Waiters

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


class _Box:
    __slots__ = ("messages", "base", "last_id", "nbytes", "last_read")

    def __init__(self, now: float) -> None:
        self.messages: Deque[Message] = collections.deque()
        # ids start after a random base, so a cursor kept from an expired
        # incarnation of this mailbox is recognised as unknown, not mistaken
        self.base = self.last_id = secrets.randbelow(2 ** 31)
        self.nbytes = 0
        self.last_read = now


class Mailbox(MailboxStore):
    """Mailboxes in memory, for one process.

    :param max_messages: messages kept per mailbox; older ones are dropped.
    :param max_bytes: bytes of message data kept per mailbox.
    :param max_age: seconds a message is kept.
    :param max_mailboxes: mailboxes held at once.
    :param max_message_bytes: the largest message accepted.
    :param mailbox_ttl: seconds after its last read that a mailbox is removed.
    :param waiters: the process's waiters (default: a pool of 50).
    :param clock: returns epoch seconds; tests pass a fake one.
    """

    def __init__(self, *, max_messages: int = 100, max_bytes: int = 1024 * 1024,
                 max_age: float = 3600.0, max_mailboxes: int = 10_000,
                 max_message_bytes: int = 64 * 1024, mailbox_ttl: float = 300.0,
                 waiters: Optional[Waiters] = None,
                 clock: Callable[[], float] = time.time) -> None:
        for name, value in (("max_messages", max_messages), ("max_bytes", max_bytes),
                            ("max_mailboxes", max_mailboxes),
                            ("max_message_bytes", max_message_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
        for name, seconds in (("max_age", max_age), ("mailbox_ttl", mailbox_ttl)):
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                    or not seconds > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, not {seconds!r}")
        if max_message_bytes > max_bytes:
            raise ValueError("max_message_bytes must not exceed max_bytes, or a message "
                             "could never be kept")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.max_age = float(max_age)
        self.max_mailboxes = max_mailboxes
        self.max_message_bytes = max_message_bytes
        self.mailbox_ttl = float(mailbox_ttl)
        self.waiters = waiters if waiters is not None else Waiters(50)
        self.clock = clock
        self._lock = threading.Lock()
        # ordered by last read, oldest first, so expiry looks at the front only
        self._boxes: "collections.OrderedDict[str, _Box]" = collections.OrderedDict()
        self._posted = 0
        self._dropped = 0

    def post(self, names: Union[str, Iterable[str]], data: str) -> Dict[str, int]:
        targets, size = post_targets(names, data, self.max_message_bytes)
        now = self.clock()
        ids: Dict[str, int] = {}
        with self._lock:
            self._expire(now)
            missing = sum(1 for name in targets if name not in self._boxes)
            if missing and not self._make_room(missing, keep=targets):
                raise TooManyMailboxes(f"{self.max_mailboxes} mailboxes exist already")
            for name in targets:
                box = self._boxes.get(name)
                if box is None:
                    box = self._boxes[name] = _Box(now)
                box.last_id += 1
                box.messages.append(Message(box.last_id, data, now))
                box.nbytes += size
                self._trim(box, now)
                ids[name] = box.last_id
            self._posted += len(targets)
        for name in targets:
            self.waiters.wake(name)
        return ids

    def read(self, name: str, after: Optional[int], limit: int = 100) -> ReadResult:
        now = self.clock()
        with self._lock:
            self._expire(now)
            box = self._boxes.get(name)
            if box is None:
                if not self._make_room(1, keep=(name,)):
                    raise TooManyMailboxes(f"{self.max_mailboxes} mailboxes exist already")
                box = self._boxes[name] = _Box(now)
            box.last_read = now
            self._boxes.move_to_end(name)
            self._trim(box, now)
            return select(box.messages, box.base, box.last_id, after, limit)

    def stats(self) -> Dict[str, int]:
        with self._lock:
            self._expire(self.clock())
            return {"mailboxes": len(self._boxes),
                    "messages": sum(len(b.messages) for b in self._boxes.values()),
                    "posted": self._posted, "dropped": self._dropped}

    def _trim(self, box: _Box, now: float) -> None:
        messages = box.messages
        oldest_allowed = now - self.max_age
        while messages and (len(messages) > self.max_messages or box.nbytes > self.max_bytes
                            or messages[0].time < oldest_allowed):
            dropped = messages.popleft()
            box.nbytes -= len(dropped.data.encode("utf-8"))
            self._dropped += 1

    def _make_room(self, needed: int, keep: Iterable[str]) -> bool:
        """Room for *needed* new mailboxes, made by removing the least recently
        read *empty* ones if need be: they hold nothing, and a reader that comes
        back to one is told its cursor is unknown (no message is lost).  Without
        this, anyone could fill the table with invented names for
        ``mailbox_ttl`` seconds.  Looks at no more than :data:`EVICTION_SCAN`."""
        boxes = self._boxes
        excess = len(boxes) + needed - self.max_mailboxes
        if excess <= 0:
            return True
        keep = set(keep)
        empty = [name for name, box in itertools.islice(boxes.items(), EVICTION_SCAN)
                 if not box.messages and name not in keep][:excess]
        if len(empty) < excess:
            return False
        for name in empty:
            del boxes[name]
        return True

    def _expire(self, now: float) -> None:
        cutoff = now - self.mailbox_ttl
        boxes = self._boxes
        while boxes:
            name, box = next(iter(boxes.items()))
            if box.last_read > cutoff:
                break
            del boxes[name]


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
