"""
Mailboxes on Redis
==================

:class:`RedisMailbox` keeps mailboxes in Redis with the semantics of the
in-memory :class:`~wsgiprogress.mailbox.MemoryMailboxes`: dense integer ids per
mailbox issued by Redis itself (``HINCRBY`` from a random base; no clocks),
the same bounds (messages, bytes and age per mailbox, the number of
mailboxes, the size of one message), the same gap signal, and removal of a
mailbox nobody read for ``mailbox_ttl`` seconds (by Redis key expiry).

.. code-block:: python

    backend = backend_from_url("redis://127.0.0.1:6379/0")
    backend.mailbox.post(["alice-3f2a…", "bob-9c1d…"], '{"text": "hello"}')

A post to many mailboxes is one script and one ``PUBLISH`` in one round
trip; the publish wakes the mailboxes' waiters in every process through each
process's single subscriber (:class:`~wsgiprogress.backends.redis.wakeups.RedisWakeups`).
When Redis cannot be reached a post or read raises
:class:`~wsgiprogress.mailbox.MailboxError` (answered 503 by the endpoint).

Reads of the same mailbox after the same cursor that overlap in time share
one round trip: when a post wakes a thousand waiters of one mailbox, Redis
answers one read, not a thousand.
"""
from __future__ import annotations

import json
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from ...mailbox.store import (
    EVICTION_SCAN,
    MailboxError,
    MailboxStore,
    Message,
    ReadResult,
    TooManyMailboxes,
    post_targets,
    select,
)
from ...settings import default
from ...waiters import Waiters
from .outage import Outage, Unreachable
from .wakeups import waker

if TYPE_CHECKING:
    import redis

#: Seconds a read waits for an identical read in progress (pool wait plus call).
FOLLOW_TIMEOUT = 12.0

# shared by both scripts: the clock, expiry of the mailbox index, room, trimming
_COMMON = f"local EVICTION_SCAN = {EVICTION_SCAN}\n" + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local boxes, stats = KEYS[#KEYS - 1], KEYS[#KEYS]
local max_messages, max_bytes, max_age = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local max_mailboxes, ttl_ms, key_prefix = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
redis.call('ZREMRANGEBYSCORE', boxes, '-inf', now * 1000)
-- room for new mailboxes: remove the least recently read empty ones, as in memory
local function make_room(needed, keep)
  local excess = redis.call('ZCARD', boxes) + needed - max_mailboxes
  if excess <= 0 then return true end
  local victims = {}
  for _, name in ipairs(redis.call('ZRANGE', boxes, 0, EVICTION_SCAN - 1)) do
    if #victims >= excess then break end
    if not keep[name] and redis.call('LLEN', key_prefix .. name .. ':messages') == 0 then
      victims[#victims + 1] = name
    end
  end
  if #victims < excess then return false end
  for _, name in ipairs(victims) do
    redis.call('DEL', key_prefix .. name, key_prefix .. name .. ':messages')
    redis.call('ZREM', boxes, name)
  end
  return true
end
local function trim(meta, list)
  while true do
    local head = redis.call('LINDEX', list, 0)
    if not head then return end
    local message = cjson.decode(head)
    if redis.call('LLEN', list) > max_messages
        or tonumber(redis.call('HGET', meta, 'nbytes')) > max_bytes
        or message.time < now - max_age then
      redis.call('LPOP', list)
      redis.call('HINCRBY', meta, 'nbytes', -string.len(message.data))
      redis.call('HINCRBY', stats, 'dropped', 1)
    else
      return
    end
  end
end
local function create(meta, name, base)
  redis.call('HSET', meta, 'base', base, 'last', base, 'nbytes', 0)
  redis.call('PEXPIRE', meta, ttl_ms)
  redis.call('ZADD', boxes, now * 1000 + ttl_ms, name)
end
"""

# KEYS: meta and list of each mailbox, index, stats.  ARGV: bounds and key
# prefix, data, then a name and a random base per mailbox.
_POST = _COMMON + """
local data = ARGV[7]
local count = (#KEYS - 2) / 2
local missing = 0
local targets = {}
for i = 1, count do
  targets[ARGV[6 + 2 * i]] = true
  if redis.call('EXISTS', KEYS[2 * i - 1]) == 0 then missing = missing + 1 end
end
if missing > 0 and not make_room(missing, targets) then
  return 'too_many'
end
local ids = {}
for i = 1, count do
  local meta, list = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('EXISTS', meta) == 0 then
    create(meta, ARGV[6 + 2 * i], ARGV[7 + 2 * i])
    redis.call('DEL', list)
  end
  local id = redis.call('HINCRBY', meta, 'last', 1)
  redis.call('RPUSH', list, cjson.encode({id = id, data = data, time = now}))
  redis.call('PEXPIRE', list, redis.call('PTTL', meta))
  redis.call('HINCRBY', meta, 'nbytes', string.len(data))
  trim(meta, list)
  ids[i] = id
end
redis.call('HINCRBY', stats, 'posted', count)
return ids
"""

# KEYS: meta, list, index, stats.  ARGV: bounds and key prefix, name, random base.
_READ = _COMMON + """
local meta, list = KEYS[1], KEYS[2]
if redis.call('EXISTS', meta) == 0 then
  if not make_room(1, {[ARGV[7]] = true}) then return 'too_many' end
  create(meta, ARGV[7], ARGV[8])
  redis.call('DEL', list)
end
redis.call('PEXPIRE', meta, ttl_ms)
redis.call('PEXPIRE', list, ttl_ms)
redis.call('ZADD', boxes, now * 1000 + ttl_ms, ARGV[7])
trim(meta, list)
local header = redis.call('HMGET', meta, 'base', 'last')
return {header[1], header[2], redis.call('LRANGE', list, 0, -1)}
"""


class _Flight:
    """One read in progress, which later identical reads wait for."""

    __slots__ = ("done", "result", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Optional[ReadResult] = None
        self.error: Optional[BaseException] = None


class RedisMailbox(MailboxStore):
    """Mailboxes in Redis, shared by every process that uses *client*'s server.

    The bounds are those of :class:`~wsgiprogress.mailbox.MemoryMailboxes`,
    by the same names; *key_prefix* prefixes every key; *waiters* are this
    process's, woken by :class:`~wsgiprogress.backends.redis.wakeups.RedisWakeups`;
    *outage* the backend's :class:`~wsgiprogress.backends.redis.outage.Outage`.
    """

    shared = True

    def __init__(self, client: redis.Redis, *, key_prefix: str = default("key_prefix"),
                 waiters: Optional[Waiters] = None, outage: Optional[Outage] = None,
                 clock: Callable[[], float] = time.time, **limits: Any) -> None:
        self._set_limits(limits)
        self.client = client
        self.outage = Outage() if outage is None else outage
        self.prefix = prefix = key_prefix
        self.bounds: List[Any] = [self.max_messages, self.max_bytes, self.max_age,
                                  self.max_mailboxes, int(self.mailbox_ttl * 1000),
                                  f"{prefix}m:"]
        self.waiters = waiters if waiters is not None else Waiters()
        self.clock = clock
        self.channel = prefix + "mail"
        self._index = prefix + "mailboxes"
        self._stats = prefix + "mailbox-stats"
        self._post = client.register_script(_POST)
        self._read = client.register_script(_READ)
        # bumped by every post any process announces: a read may only join a
        # read in flight that started after the posts it knows of
        self.generation = 0
        self._wake = waker(lambda: self.waiters)
        self._flights: Dict[Tuple[str, Optional[int], int, int], _Flight] = {}
        self._flights_lock = threading.Lock()

    def _keys(self, name: str) -> List[str]:
        return [f"{self.prefix}m:{name}", f"{self.prefix}m:{name}:messages"]

    def post(self, names: Union[str, Iterable[str]], data: str) -> Dict[str, int]:
        targets, _ = post_targets(names, data, self.max_message_bytes)
        keys: List[str] = []
        args: List[Any] = [*self.bounds, data]
        for name in targets:
            keys += self._keys(name)
            args += [name, secrets.randbelow(2 ** 31)]
        pipe = self.client.pipeline(transaction=False)
        self._post(keys=keys + [self._index, self._stats], args=args, client=pipe)
        pipe.publish(self.channel, " ".join(targets))
        ids = self._call(pipe.execute)[0]
        if ids == "too_many":
            raise TooManyMailboxes(f"{self.bounds[3]} mailboxes exist already")
        return {name: int(i) for name, i in zip(targets, ids)}

    def read(self, name: str, after: Optional[int], limit: int = 100) -> ReadResult:
        key = (name, after, limit, self.generation)
        with self._flights_lock:
            flight = self._flights.get(key)
            leading = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leading:
            if not flight.done.wait(FOLLOW_TIMEOUT):
                raise MailboxError("mailbox store unavailable (a read took too long)")
            if flight.error is not None:
                raise flight.error
            assert flight.result is not None
            return flight.result
        try:
            flight.result = self._read_now(name, after, limit)
            return flight.result
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._flights_lock:
                del self._flights[key]
            flight.done.set()

    def _read_now(self, name: str, after: Optional[int], limit: int) -> ReadResult:
        answer = self._call(lambda: self._read(
            keys=self._keys(name) + [self._index, self._stats],
            args=[*self.bounds, name, secrets.randbelow(2 ** 31)]))
        if answer == "too_many":
            raise TooManyMailboxes(f"{self.bounds[3]} mailboxes exist already")
        base, last, raw = answer
        messages = [Message(m["id"], m["data"], m["time"]) for m in map(json.loads, raw)]
        return select(messages, int(base), int(last), after, limit)

    def posted(self, names: Optional[List[str]]) -> None:
        """A post reached *names* (``None``: anything may have): called by
        :class:`~wsgiprogress.backends.redis.wakeups.RedisWakeups` before any waiter wakes."""
        self.generation += 1
        self._wake(names)

    def stats(self) -> Dict[str, int]:
        def count() -> List[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.zremrangebyscore(self._index, "-inf", self.clock() * 1000)
            pipe.zrange(self._index, 0, -1)
            pipe.hmget(self._stats, "posted", "dropped")
            _, names, counters = pipe.execute()
            lengths = self.client.pipeline(transaction=False)
            for name in names:
                lengths.llen(self._keys(name)[1])
            return [len(names), sum(lengths.execute()), *counters]
        mailboxes, messages, posted, dropped = self._call(count)
        return {"mailboxes": mailboxes, "messages": messages,
                "posted": int(posted or 0), "dropped": int(dropped or 0)}

    def _call(self, operation: Callable[[], Any]) -> Any:
        try:
            return self.outage.call(operation)
        except MailboxError:
            raise
        except Unreachable as exc:
            raise MailboxError(f"mailbox store unavailable ({exc})") from exc
        except Exception as exc:
            raise MailboxError(f"mailbox store unavailable ({exc.__class__.__name__})") \
                from exc
