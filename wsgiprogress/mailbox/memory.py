"""
Mailboxes in memory
===================

:class:`MemoryMailboxes` keeps the mailboxes of one process in one ordered
dictionary behind one lock: the default store of the ``memory://`` backend.

.. code-block:: python

    from wsgiprogress.mailbox import MemoryMailboxes

    mailboxes = MemoryMailboxes(max_messages=100, mailbox_ttl=300)
    mailboxes.post("alice-3f2a9c0d1e7b4a55", '{"text": "hello"}')
"""
from __future__ import annotations

import collections
import itertools
import secrets
import threading
import time
from typing import Any, Callable, Deque, Dict, Iterable, Optional, Union

from ..waiters import Waiters
from .store import (
    EVICTION_SCAN,
    MailboxStore,
    Message,
    ReadResult,
    TooManyMailboxes,
    post_targets,
    select,
)


class _Box:
    __slots__ = ("messages", "base", "last_id", "nbytes", "last_read")

    def __init__(self, now: float) -> None:
        self.messages: Deque[Message] = collections.deque()
        # ids start after a random base, so a cursor kept from an expired
        # incarnation of this mailbox is recognised as unknown, not mistaken
        self.base = self.last_id = secrets.randbelow(2 ** 31)
        self.nbytes = 0
        self.last_read = now


class MemoryMailboxes(MailboxStore):
    """Mailboxes in memory, for one process.

    :param limits: the bounds, by the names of
        :data:`~wsgiprogress.settings.MAILBOX_LIMITS` (``max_messages``,
        ``max_bytes``, ``max_age``, ``max_mailboxes``, ``max_message_bytes``,
        ``mailbox_ttl``); defaults and checks come from the settings table.
    :param waiters: the process's waiters.
    :param clock: returns epoch seconds; tests pass a fake one.
    :raises ConfigurationError: for an unknown bound or a bad value.
    """

    def __init__(self, *, waiters: Optional[Waiters] = None,
                 clock: Callable[[], float] = time.time, **limits: Any) -> None:
        self._set_limits(limits)
        self.waiters = waiters if waiters is not None else Waiters()
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
