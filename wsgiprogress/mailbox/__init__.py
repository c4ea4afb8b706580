"""
Mailboxes
=========

Named, bounded queues of messages for clients that come and go: the
interface every store implements and what they share
(:mod:`~wsgiprogress.mailbox.store`), and the in-memory store
(:mod:`~wsgiprogress.mailbox.memory`).  The HTTP endpoints are in
:mod:`wsgiprogress.web.mailbox`; the Redis store in
:mod:`wsgiprogress.backends.redis.mailbox`.

.. code-block:: python

    from wsgiprogress.mailbox import MemoryMailboxes

    mailboxes = MemoryMailboxes(max_messages=100)
    mailboxes.post(["alice-3f2a9c0d1e7b4a55", "bob-9c1d0e7b4a553f2a"], "hello")
"""
from __future__ import annotations

from .memory import MemoryMailboxes
from .store import (
    MailboxError,
    MailboxStore,
    Message,
    MessageTooLarge,
    ReadResult,
    TooManyMailboxes,
)

#: The name :class:`MemoryMailboxes` had before 0.2: it holds many mailboxes.
Mailbox = MemoryMailboxes

__all__ = ["Mailbox", "MailboxError", "MailboxStore", "MemoryMailboxes", "Message",
           "MessageTooLarge", "ReadResult", "TooManyMailboxes"]
