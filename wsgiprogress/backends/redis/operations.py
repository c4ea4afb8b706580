"""
Operations on Redis
===================

:class:`RedisOperations` keeps operations in Redis with the semantics of
:class:`~wsgiprogress.operations.memory.MemoryOperations`, so a monitor made
by one process (a gunicorn worker) is read, long-polled, streamed and
cancelled through any other.  Each operation is a hash ``<key_prefix>op:<id>``;
an index ``<key_prefix>operations`` scored by expiry bounds their number
(``max_operations``; the oldest finished, or abandoned by a process that
died, make room); the kept final response
is ``<key_prefix>op:<id>:response`` (status, headers and the base64 body,
at most ``max_kept_response``), expiring with its monitor ``operations_ttl``
seconds after the application ended; the kept bodies of all processes hold
at most ``max_kept_bytes`` together, counted by the same scripts that keep,
drop and forget them (the oldest make room, as in memory).  Every change is one script that also
publishes ``operation:<id>`` on ``<key_prefix>changed``, which wakes the
monitor's waiters in every process
(:class:`~wsgiprogress.backends.redis.wakeups.RedisWakeups`).

.. code-block:: python

    backend = backend_from_url("redis://127.0.0.1:6379/0", max_operations=1000)
    backend.operations.get(op_id)
"""
from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from ...operations import KeptBody, KeptResponse, OperationRecord, Steps
from ...operations.record import CANCELLED, DONE, ERROR, RUNNING
from ...operations.store import OperationStore, OperationsUnavailable, new_operation_id
from ...settings import OPERATIONS_SETTINGS, resolve
from .outage import Outage

if TYPE_CHECKING:
    import redis

    from ...waiters import Waiters

log = logging.getLogger("wsgiprogress")

#: Seconds between two writes that tell the other processes an operation
#: of this one still runs (its application may report nothing for hours).
BEAT = 5.0
#: A running operation nobody wrote for this long was abandoned (its process
#: died): shown ended (``error``); it expires ``operations_ttl`` later.
STALE_AFTER = 20.0

# The kept responses' bytes, counted in Redis for every process: a sorted set
# of the ids with a kept response, oldest first (ORDER, scored by SEQUENCE),
# their body sizes (SIZES) and their sum (BYTES).  Every script that keeps,
# drops or finds expired a kept response updates the three together.
# Expects the locals ORDER, SIZES, BYTES (keys) and PREFIX (the key prefix).
_KEPT = """
local function unkeep(id)
  local size = redis.call('HGET', SIZES, id)
  redis.call('ZREM', ORDER, id)
  if size then
    redis.call('HDEL', SIZES, id)
    redis.call('DECRBY', BYTES, size)
  end
end
local function sweep()
  -- Redis expired them, oldest first (one ttl): uncount them
  while true do
    local oldest = redis.call('ZRANGE', ORDER, 0, 0)[1]
    if not oldest or redis.call('EXISTS', PREFIX .. 'op:' .. oldest .. ':response') == 1 then
      return
    end
    unkeep(oldest)
  end
end
local function room(size, limit)
  -- the oldest kept responses make room; false when size alone is over the limit
  if size > limit then return false end
  sweep()
  while tonumber(redis.call('GET', BYTES) or '0') + size > limit do
    local oldest = redis.call('ZRANGE', ORDER, 0, 0)[1]
    if not oldest then  -- nothing kept: nothing counted
      redis.call('SET', BYTES, 0)
    else
      local key = PREFIX .. 'op:' .. oldest
      redis.call('DEL', key .. ':response')
      if redis.call('EXISTS', key) == 1 then
        redis.call('HSET', key, 'kept', 0, 'dropped', 1)
      end
      unkeep(oldest)
    end
  end
  return true
end
"""

# KEYS: record, index, kept order, sizes, bytes.  ARGV: id, now, capacity,
# running ttl ms (stale + operations ttl: the PTTL says when it was written),
# key prefix, the PTTL at or below which a running one is abandoned (its
# process died: it makes room as a finished one does).
_CREATE = """
local ORDER, SIZES, BYTES, PREFIX = KEYS[3], KEYS[4], KEYS[5], ARGV[5]
""" + _KEPT + """
local now_ms = math.floor(tonumber(ARGV[2]) * 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  local key = ARGV[5] .. 'op:' .. oldest
  if redis.call('HGET', key, 'finished') == ''
      and redis.call('PTTL', key) > tonumber(ARGV[6]) then return 0 end
  redis.call('DEL', key, key .. ':response')
  redis.call('ZREM', KEYS[2], oldest)
  unkeep(oldest)
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'state', 'running', 'done', 0, 'total', '',
           'label', '', 'started', ARGV[2], 'updated', ARGV[2], 'finished', '',
           'status', '', 'kept', 0, 'dropped', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[4]), ARGV[1])
return 1
"""

# KEYS: record, index.  ARGV: channel, name, running ttl ms, id, now, then
# field, value pairs.  Sets the fields of a running operation (a 'state' of
# 'cancelled' stays) and its expiry; without fields (a beat), tells nobody.
_WHILE_RUNNING = """
if redis.call('HGET', KEYS[1], 'finished') ~= '' then return 0 end
for i = 6, #ARGV, 2 do
  if not (ARGV[i] == 'state' and redis.call('HGET', KEYS[1], 'state') == 'cancelled') then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], math.floor(tonumber(ARGV[5]) * 1000) + tonumber(ARGV[3]), ARGV[4])
if #ARGV >= 6 then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return 1
"""

# KEYS: record, index, response, kept order, sizes, bytes, sequence.  ARGV:
# channel, name, ttl ms, id, now, status, state, kept response ('' for none),
# a response was given (0/1), its body size, max kept bytes, key prefix.  A
# cancelled one stays cancelled and keeps no response (not dropped: it was
# not too large); a response given and not kept is dropped, as in
# MemoryOperations.finish.
_FINISH = """
local ORDER, SIZES, BYTES, PREFIX = KEYS[4], KEYS[5], KEYS[6], ARGV[12]
""" + _KEPT + """
if redis.call('HGET', KEYS[1], 'finished') ~= '' then return 0 end
local state, kept, size = ARGV[7], ARGV[8], tonumber(ARGV[10])
if redis.call('HGET', KEYS[1], 'state') == 'cancelled' then
  state, kept = 'cancelled', ''
end
if kept ~= '' and not room(size, tonumber(ARGV[11])) then kept = '' end
redis.call('HSET', KEYS[1], 'finished', ARGV[5], 'updated', ARGV[5], 'status', ARGV[6],
           'state', state, 'kept', kept == '' and 0 or 1,
           'dropped', (kept == '' and ARGV[9] == '1' and state ~= 'cancelled') and 1 or 0)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], math.floor(tonumber(ARGV[5]) * 1000) + tonumber(ARGV[3]), ARGV[4])
if kept ~= '' then
  redis.call('SET', KEYS[3], kept, 'PX', ARGV[3])
  redis.call('ZADD', ORDER, redis.call('INCR', KEYS[7]), ARGV[4])
  redis.call('HSET', SIZES, ARGV[4], size)
  redis.call('INCRBY', BYTES, size)
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
"""

# KEYS: record, response, index, kept order, sizes, bytes.  ARGV: id, channel,
# name, key prefix.  Returns the number of keys deleted (0: unknown).
_FORGET = """
local ORDER, SIZES, BYTES, PREFIX = KEYS[4], KEYS[5], KEYS[6], ARGV[4]
""" + _KEPT + """
local deleted = redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
unkeep(ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return deleted
"""

_SETTINGS = tuple(s for s in OPERATIONS_SETTINGS
                  if s.name in ("max_operations", "operations_ttl", "max_kept_bytes"))


class RedisOperations(OperationStore):
    """Operations in Redis, shared by every process that uses *client*'s server.

    :param client: a ``redis.Redis`` made with ``decode_responses=True``.
    :param key_prefix: the prefix of every key.
    :param reader: the client monitors read with (short timeout); default *client*.
    :param outage: the backend's :class:`~wsgiprogress.backends.redis.outage.Outage`
        of *client*; *reader_outage* that of *reader*.
    :param settings: ``max_operations``, ``operations_ttl`` and
        ``max_kept_bytes``, which here bounds the kept responses of every
        process that shares the prefix, together (the oldest make room, as
        in memory).
    """

    shared = True

    def __init__(self, client: redis.Redis, *, key_prefix: str = "wsgiprogress:",
                 waiters: Optional[Waiters] = None, reader: Optional[redis.Redis] = None,
                 outage: Optional[Outage] = None, reader_outage: Optional[Outage] = None,
                 clock: Callable[[], float] = time.time, **settings: Any) -> None:
        options = resolve(_SETTINGS, settings)
        super().__init__(waiters, clock)
        self.client = client
        self.reader = reader if reader is not None else client
        self.outage = Outage() if outage is None else outage
        self.reader_outage = reader_outage or (self.outage if reader is None else Outage())
        self.prefix = key_prefix
        self.channel = key_prefix + "changed"
        self.capacity: int = options["max_operations"]
        self.ttl_ms = int(options["operations_ttl"] * 1000)
        self.max_kept_bytes: int = options["max_kept_bytes"]
        self._index = key_prefix + "operations"
        self._kept = [key_prefix + "kept", key_prefix + "kept_sizes", key_prefix + "kept_bytes"]
        self._create = client.register_script(_CREATE)
        self._while_running = client.register_script(_WHILE_RUNNING)
        self._finish = client.register_script(_FINISH)
        self._forget = client.register_script(_FORGET)
        self.running_ms = int(STALE_AFTER * 1000) + self.ttl_ms
        # the operations this process runs, written every BEAT seconds by a
        # thread started with the first
        self._running: Dict[str, None] = {}
        # the finishes Redis could not take, tried again by that thread until
        # the monotonic time given (their operations still counted running)
        self._unfinished: Dict[str, Tuple[float, List[Any]]] = {}
        self._closed = threading.Event()
        self._beats: Optional[threading.Thread] = None

    def _key(self, op_id: str) -> str:
        return f"{self.prefix}op:{op_id}"

    def _call(self, what: Callable[[], Any], outage: Optional[Outage] = None) -> Any:
        try:
            return (outage or self.outage).call(what)
        except Exception as exc:
            raise OperationsUnavailable(f"operations store unavailable: {exc}") from exc

    def create(self) -> Optional[str]:
        op_id = new_operation_id()
        created = self._call(lambda: self._create(
            keys=[self._key(op_id), self._index, *self._kept],
            args=[op_id, repr(self.clock()), self.capacity, self.running_ms, self.prefix,
                  self.running_ms - int(STALE_AFTER * 1000)]))
        if not int(created):
            return None
        self._running[op_id] = None
        if self._beats is None:
            self._beats = threading.Thread(target=self._beat, name="wsgiprogress-operations",
                                           daemon=True)
            self._beats.start()
        return op_id

    def _set_running(self, op_id: str, pairs: List[Tuple[str, Any]],
                     client: Optional[Any] = None) -> Any:
        args: List[Any] = [self.channel, "operation:" + op_id, self.running_ms, op_id,
                           repr(self.clock())]
        for name, value in pairs + [("updated", repr(self.clock()))] if pairs else ():
            args += [name, "" if value is None else value]
        return self._while_running(keys=[self._key(op_id), self._index], args=args,
                                   client=client)

    def _beat(self) -> None:
        """Every :data:`BEAT` seconds, one round trip renews the operations
        of this process: alive, they are not taken for abandoned."""
        while not self._closed.wait(BEAT):
            for op_id, (until, args) in list(self._unfinished.items()):
                try:
                    self._write_finish(op_id, args)
                except OperationsUnavailable:
                    if time.monotonic() < until:
                        continue
                    log.warning("operation %s: Redis took no finish for %.0f s; its monitor "
                                "shows it failed", op_id, STALE_AFTER)
                self._unfinished.pop(op_id, None)
                self._running.pop(op_id, None)
            pipe = self.client.pipeline(transaction=False)
            for op_id in list(self._running):
                self._set_running(op_id, [], client=pipe)
            with contextlib.suppress(OperationsUnavailable):  # the next beat tries again
                self._call(pipe.execute)

    def close(self) -> None:
        self._closed.set()
        if self._beats is not None:
            self._beats.join(5)

    def report(self, op_id: str, steps: Steps) -> None:
        self._call(lambda: self._set_running(
            op_id, [("done", steps.done), ("total", steps.total), ("label", steps.label)]))

    def cancel(self, op_id: str) -> Optional[OperationRecord]:
        self._call(lambda: self._set_running(op_id, [("state", CANCELLED)]))
        return self.get(op_id)

    def finish(self, op_id: str, status: Optional[int],
               response: Optional[KeptResponse]) -> None:
        """As :meth:`OperationStore.finish`; when Redis cannot take it, it is
        tried again every :data:`BEAT` seconds for :data:`STALE_AFTER`
        seconds (the operation stays running meanwhile), and raises."""
        data, size = "", 0
        if response is not None and not response.body.dropped and status is not None:
            size = response.body.size
            data = json.dumps({"status": response.status, "headers": response.headers,
                               "body": base64.b64encode(response.body.read()).decode()})
        if response is not None:
            response.body.close()
        now = repr(self.clock())
        args: List[Any] = [self.channel, "operation:" + op_id, self.ttl_ms, op_id, now,
                           "" if status is None else status,
                           DONE if status is not None else ERROR, data,
                           int(response is not None), size, self.max_kept_bytes, self.prefix]
        try:
            self._write_finish(op_id, args)
        except OperationsUnavailable:
            self._unfinished[op_id] = (time.monotonic() + STALE_AFTER, args)
            raise
        self._running.pop(op_id, None)

    def _write_finish(self, op_id: str, args: List[Any]) -> None:
        key = self._key(op_id)
        self._call(lambda: self._finish(
            keys=[key, self._index, key + ":response", *self._kept,
                  self.prefix + "kept_sequence"], args=args))

    @property
    def kept_bytes(self) -> int:
        """The bytes of the kept responses of every process, as counted in Redis
        (those Redis expired are uncounted at the next finish)."""
        return int(self._call(lambda: self.reader.get(self._kept[2]), self.reader_outage)
                   or 0)

    def is_cancelled(self, op_id: str) -> bool:
        return bool(self._call(lambda: self.client.hget(self._key(op_id), "state"))
                    == CANCELLED)

    def get(self, op_id: str) -> Optional[OperationRecord]:
        """The operation; one whose process nobody heard of for
        :data:`STALE_AFTER` seconds (the record's PTTL says) ended ``error``."""
        pipe = self.reader.pipeline(transaction=False)
        pipe.hgetall(self._key(op_id))
        pipe.pttl(self._key(op_id))
        fields, left_ms = self._call(pipe.execute, self.reader_outage)
        if not fields:
            return None
        number = _optional(float)
        whole = _optional(int)
        state, finished = fields.get("state", RUNNING), number(fields.get("finished"))
        silent = (self.running_ms - int(left_ms)) / 1000
        if finished is None and silent >= STALE_AFTER:
            state, finished = ERROR, self.clock() - silent
        return OperationRecord(
            fields["id"], state,
            Steps(int(fields.get("done") or 0), whole(fields.get("total")),
                  fields.get("label") or None),
            float(fields.get("started") or 0), float(fields.get("updated") or 0),
            finished, whole(fields.get("status")),
            fields.get("kept") == "1", fields.get("dropped") == "1")

    def response(self, op_id: str) -> Optional[KeptResponse]:
        raw = self._call(lambda: self.reader.get(self._key(op_id) + ":response"),
                         self.reader_outage)
        if raw is None:
            return None
        doc = json.loads(raw)
        body = base64.b64decode(doc["body"])
        kept = KeptBody(len(body))
        kept.write(body)
        return KeptResponse(doc["status"], [(str(n), str(v)) for n, v in doc["headers"]], kept)

    def forget(self, op_id: str) -> bool:
        self._running.pop(op_id, None)
        self._unfinished.pop(op_id, None)
        key = self._key(op_id)
        return bool(int(self._call(lambda: self._forget(
            keys=[key, key + ":response", self._index, *self._kept],
            args=[op_id, self.channel, "operation:" + op_id, self.prefix]))))


def _optional(convert: Callable[[str], Any]) -> Callable[[Optional[str]], Any]:
    return lambda value: convert(value) if value else None
