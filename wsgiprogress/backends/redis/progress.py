"""
Progress on Redis
=================

:class:`RedisProgressStore` shares progress entries between processes and
hosts.  It implements the same :class:`~wsgiprogress.progress.store.ProgressStore`
interface as the in-memory table, so the middleware, the server and the probe
do not know the difference.

.. code-block:: python

    from wsgiprogress.backends import backend_from_url

    backend = backend_from_url("redis://127.0.0.1:6379/0")
    app = ProgressMiddleware(app, table=backend.progress)

Writes go through a :class:`~wsgiprogress.backends.redis.writer.CoalescingWriter`:
``begin`` returns a token at once and the claim is made by the writer's
thread, so counting threads never wait on Redis.  Each write is one script
that claims or updates the entry atomically: a running entry of another
request refuses it (the duplicate runs untracked), the ``capacity`` bound on
running entries refuses new claims, and a finished entry expires by Redis
itself ``ttl`` seconds later.  Writers name the entries they changed on one
pub/sub channel, which wakes waiting probes in every process.

A process writes each of its running requests at least every :data:`BEAT`
seconds, moving or not.  An entry nobody wrote for :data:`STALE_AFTER`
seconds belongs to a process that died (SIGKILL, a lost host): probes
show it ended (``error``, ``aborted``), a new request may claim its ID,
and Redis expires it ``ttl`` seconds later.  Redis measures the silence
(the entry's ``PTTL``), so the hosts' clocks do not matter.

A probe reads through *reader*, a client with a short timeout
(:data:`~wsgiprogress.backends.redis.PROBE_READ_TIMEOUT`).  After a call
failed to reach Redis, reads skip it for a second
(:class:`~wsgiprogress.backends.redis.outage.Outage`, one per connection
pool, shared with the mailboxes and monitors) and raise
:class:`~wsgiprogress.progress.store.BackendUnavailable` at once (the probe
answers ``unknown`` and says the backend is unavailable); then one read tries
again, and the first that succeeds ends the outage.  A request running in this
process is read from its tracker once Redis took its claim; a claim Redis
refused (another process's request holds the ID) is read from Redis.
"""
from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, Dict, Hashable, List, Mapping, Optional, Tuple

from redis.exceptions import ResponseError

from ...progress.entry import (
    ABORTED,
    ERROR,
    RUNNING_STATES,
    STARTING,
    UPLOADING,
    ProgressEntry,
)
from ...progress.ratelimit import RateLimitedWarning
from ...progress.store import BackendUnavailable, ProgressStore
from ...progress.tracker import Tracker
from ...settings import STORE_SETTINGS, resolve
from ...waiters import Waiters
from .outage import Outage
from .writer import REFUSED, CoalescingWriter, Snapshot

if TYPE_CHECKING:
    import redis


#: Seconds after which a running request whose counters did not move is
#: written again, so other processes see that its process lives.
BEAT = 5.0
#: A running entry nobody has written for this long was abandoned (its
#: process died): shown ended, its ID free, its capacity freed.
STALE_AFTER = 20.0
#: Seconds a handed-over entry waits for its upload's next request.
HANDED_TTL = 3600.0

#: Seconds a read waits for the answer to a claim of this process (see
#: :meth:`RedisProgressStore.claim_stands`).
CLAIM_WAIT = 0.5

#: A running entry of a resumable upload whose request went silent this long
#: (its host died, say) may be taken over by the upload's next request.
SILENT_AFTER = 10.0

# KEYS: entry, running set (scored by last write), finished set (scored by
# expiry).  ARGV: id, token, snapshot, final ('1' ends the entry, 'h' hands
# it over, '0'), ttl ms, stale ms, capacity, owner ('' for none), the
# snapshot's received, silent ms, handed ttl ms.  A running entry lives
# stale + ttl ms after its last write: its PTTL says how long ago that was.
_WRITE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local stale_ms, live_ms = tonumber(ARGV[6]), tonumber(ARGV[6]) + tonumber(ARGV[5])
local current = redis.call('GET', KEYS[1])
local own = false
if current then
  local doc = cjson.decode(current)
  own = doc.token == ARGV[2]
  local abandoned = not doc.handed
                    and live_ms - redis.call('PTTL', KEYS[1]) >= stale_ms
  if not own and not abandoned and (doc.state == 'starting' or doc.state == 'uploading'
                                    or doc.state == 'processing') then
    -- a request of the same upload takes over what the last one handed
    -- over, left silent, or counted no further than it does
    if ARGV[8] == '' or doc.owner ~= ARGV[8] then return 'refused' end
    if not doc.handed and tonumber(ARGV[9]) < (tonumber(doc.received) or 0) then
      local last = redis.call('ZSCORE', KEYS[2], ARGV[1])
      if last and now_ms - tonumber(last) < tonumber(ARGV[10]) then return 'refused' end
    end
    own = true
  end
end
if not own and ARGV[4] ~= '1' and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[7]) then
  -- entries nobody wrote for stale ms were abandoned (their process died):
  -- scored by last write, they go in O(log n)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms - stale_ms)
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[7]) then return 'refused' end
end
if ARGV[4] == '1' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  if tonumber(ARGV[5]) > 0 then
    redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[5])
    redis.call('ZADD', KEYS[3], now_ms + tonumber(ARGV[5]), ARGV[1])
  else
    redis.call('DEL', KEYS[1])
  end
  return 'settled'
end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[2], now_ms, ARGV[1])
if ARGV[4] == 'h' then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[11])
  return 'settled'
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', live_ms)
return 'written'
"""

_FIELDS = ProgressEntry.__slots__


def _entry_error(error: Exception) -> bool:
    """True when *error* is about one entry's key (a script that failed on
    what another program left there: ``WRONGTYPE``, or a plain ``ERR``, whose
    code redis-py drops), not about Redis (``OOM``, ``READONLY``,
    ``MISCONF``...: a class of its own, or the code kept): only that request
    goes untracked."""
    code = str(error).split(" ", 1)[0]
    return type(error) is ResponseError and (code == "WRONGTYPE" or not code.isupper())


class RedisProgressStore(ProgressStore):
    """Progress entries in Redis, shared by every process that uses *client*'s server.

    :param client: a ``redis.Redis`` made with ``decode_responses=True`` and
        socket timeouts (see :func:`wsgiprogress.backends.backend_from_url`).
    :param settings: ``key_prefix``, the prefix of every key, so several
        applications share a Redis; ``ttl``, seconds a finished entry stays
        visible; ``capacity``, the most running entries across all processes
        (:data:`wsgiprogress.settings.STORE_SETTINGS`).
    :param waiters: this process's waiters; the wake-ups come from
        :class:`~wsgiprogress.backends.redis.wakeups.RedisWakeups`.
    :param interval: seconds between two writes of one upload (0.2: five a second).
    :param reader: the client :meth:`get` reads with, made with a short
        socket timeout and no retries; default *client*.
    :param outage: what the calls through *client* found of Redis's
        reachability, shared with the backend's mailboxes and monitors.
    :param reader_outage: the same of the calls through *reader*.
    """

    shared = True

    def __init__(self, client: redis.Redis, *, waiters: Optional[Waiters] = None,
                 interval: float = 0.2, clock: Callable[[], float] = time.time,
                 reader: Optional[redis.Redis] = None,
                 outage: Optional[Outage] = None, reader_outage: Optional[Outage] = None,
                 **settings: Any) -> None:
        options = resolve(STORE_SETTINGS, settings)
        self.client = client
        self.reader = client if reader is None else reader
        self.outage = Outage() if outage is None else outage
        self.reader_outage = reader_outage or (self.outage if reader is None else Outage())
        self.prefix = prefix = options["key_prefix"]
        self.ttl: float = options["ttl"]
        self.capacity: int = options["capacity"]
        super().__init__(clock, waiters)
        self.channel = prefix + "changed"
        #: Cancelled IDs, for the process that runs the request.
        self.cancel_channel = prefix + "cancel"
        self._running_key = prefix + "running"
        self._finished_key = prefix + "finished"
        self._write = client.register_script(_WRITE)
        self._full_warning = RateLimitedWarning(
            "progress writer full (%d requests); request %r untracked")
        self._entry_warning = RateLimitedWarning(
            "progress writer: Redis refused the entry of %r (%s); request untracked")
        # the counters each running request last had written, and when, by token
        self._written: Dict[str, Tuple[int, int, float]] = {}
        self.writer = CoalescingWriter(self._write_batch, interval=interval,
                                       limit=self.capacity,
                                       name="wsgiprogress-redis-writer", poll=self._poll)

    def entry_key(self, progress_id: str) -> str:
        return f"{self.prefix}p:{progress_id}"

    # -- writing: never on the caller's thread ---------------------------------

    def begin(self, progress_id: str, size: Optional[int], *, owner: Optional[str] = None,
              received: int = 0) -> Optional[str]:
        token = uuid.uuid4().hex
        snapshot: Snapshot = {
            "id": progress_id, "token": token, "state": UPLOADING if received else STARTING,
            "received": received, "size": size, "sent": 0, "response_size": None,
            "status": None, "reason": None, "started": self.clock(), "finished": None,
            "speed": 0.0, "owner": owner}
        if not self.writer.put(token, snapshot, urgent=True):
            self._full_warning.warn(self.capacity, progress_id)
            return None
        return token

    def update(self, progress_id: str, token: Hashable, fields: Mapping[str, Any]) -> None:
        self.writer.put(str(token), dict(fields), urgent="state" in fields)

    def finish(self, progress_id: str, token: Hashable, fields: Mapping[str, Any]) -> None:
        self.writer.put(str(token), dict(fields), urgent=True, last=True)

    def flush(self, timeout: float = 5.0) -> bool:
        return self.writer.flush(timeout)

    def release(self, tracker: Tracker) -> None:
        super().release(tracker)
        self._written.pop(str(tracker.token), None)

    def hand_over(self, tracker: Tracker) -> None:
        """The entry's last write from this process: running, ``handed``; the
        writer forgets the token once it is written, so nothing later of this
        request (a counter it polled) can overwrite the next request's."""
        self.writer.put(str(tracker.token), {**tracker.fields(), "handed": True}, urgent=True)
        self.release(tracker)

    def claim_stands(self, tracker: Tracker) -> bool:
        """False once Redis refused *tracker*'s claim: a request of another
        process holds the ID, and its entry is what Redis has.  Until the
        claim's first write comes back (a few milliseconds after :meth:`begin`)
        this waits for it, at most :data:`CLAIM_WAIT` seconds.  Still
        unanswered (a writer slower than that, or Redis away): False while
        Redis holds another request's running entry, which would refuse the
        claim; else (or Redis away) the claim stands, so local counters show."""
        answer = self.writer.claimed(str(tracker.token), CLAIM_WAIT)
        if answer is not None:
            return answer
        try:
            docs = self._read(lambda: self._docs(self.reader, [tracker.id]), self.reader_outage)
        except BackendUnavailable:
            return True
        return not any(doc.get("token") != str(tracker.token)
                       and doc.get("state") in RUNNING_STATES for doc in docs)

    def _poll(self) -> None:
        """On the writer's thread, once a round (``interval``): the counters of
        this process's running requests that moved since they were written,
        or were written :data:`BEAT` seconds ago (this process lives).
        Counting itself never calls the store between state changes."""
        written, now = self._written, time.monotonic()
        for tracker in list(self.live.values()):
            if tracker.finished:
                continue
            token = str(tracker.token)
            counters = (tracker.received, tracker.sent)
            last = written.get(token)
            if last is None or last[:2] != counters or now - last[2] >= BEAT:
                written[token] = (*counters, now)
                self.writer.put(token, tracker.counters())

    def close(self) -> None:
        self.writer.close()

    def cancel(self, progress_id: str) -> bool:
        """Cancel here when the request runs in this process, else tell every
        process (:meth:`cancelled_elsewhere` stops it where it runs): True
        then says it was sent, not that it has stopped.

        :raises BackendUnavailable: when Redis cannot be asked.
        """
        if super().cancel(progress_id):
            return True
        docs = self._read(lambda: self._docs(self.reader, [progress_id]), self.reader_outage)
        # a resumable upload handed over between its requests runs nowhere
        if not any(doc.get("state") in RUNNING_STATES and not doc.get("handed") for doc in docs):
            return False
        try:
            self.client.publish(self.cancel_channel, progress_id)
        except Exception as exc:
            raise BackendUnavailable(f"progress backend unavailable: {exc}") from exc
        return True

    def cancelled_elsewhere(self, names: Optional[List[str]]) -> None:
        """The wake-up handler of :attr:`cancel_channel`: cancel those of
        *names* that run in this process (``None``, after a reconnect, names none)."""
        for name in names or ():
            ProgressStore.cancel(self, name)

    def _write_batch(self, batch: List[Tuple[str, Snapshot]]) -> Dict[str, str]:
        pipe = self.client.pipeline(transaction=False)
        ttl_ms, stale_ms = int(self.ttl * 1000), int(STALE_AFTER * 1000)
        for token, snapshot in batch:
            progress_id = snapshot["id"]
            final = "1" if snapshot.get("finished") is not None else \
                "h" if snapshot.get("handed") else "0"
            self._write(keys=[self.entry_key(progress_id), self._running_key,
                              self._finished_key],
                        args=[progress_id, token, json.dumps(snapshot), final, ttl_ms,
                              stale_ms, self.capacity, snapshot.get("owner") or "",
                              snapshot.get("received") or 0, int(SILENT_AFTER * 1000),
                              int(HANDED_TTL * 1000)],
                        client=pipe)
        pipe.publish(self.channel, " ".join({s["id"] for _, s in batch}))
        *outcomes, published = pipe.execute(raise_on_error=False)
        for outcome in (published, *outcomes):
            if isinstance(outcome, Exception) and not _entry_error(outcome):
                raise outcome  # out of memory, a replica...: the batch waits
        settled = {}
        for (token, snapshot), outcome in zip(batch, outcomes):
            if isinstance(outcome, Exception):  # this entry's key: the request goes untracked
                self._entry_warning.warn(snapshot["id"], outcome)
                outcome = REFUSED
            settled[token] = outcome
        return settled

    # -- reading: on the probe's thread, with a short timeout ----------------------

    def get(self, progress_id: str) -> Optional[ProgressEntry]:
        found = self._read(lambda: self._fetch(self.reader, [progress_id]),
                           self.reader_outage)
        return found[0] if found else None

    def _read(self, operation: Callable[[], Any], outage: Optional[Outage] = None) -> Any:
        """*operation*'s result, through *outage* (default :attr:`outage`).

        :raises BackendUnavailable: when Redis could not (or a moment ago
            could not) be reached, or answered an error."""
        try:
            return (outage or self.outage).call(operation)
        except Exception as exc:
            raise BackendUnavailable(f"progress backend unavailable: {exc}") from exc

    def counts(self) -> Dict[str, int]:
        now_ms = int(self.clock() * 1000)
        pipe = self.client.pipeline(transaction=False)
        pipe.zremrangebyscore(self._finished_key, "-inf", now_ms)
        pipe.zcount(self._running_key, now_ms - int(STALE_AFTER * 1000), "+inf")
        pipe.zcard(self._finished_key)
        _, running, finished = self._read(pipe.execute)
        return {"running": int(running), "finished": int(finished)}

    def recent(self, limit: int = 100) -> List[ProgressEntry]:
        if limit <= 0:
            return []

        def read() -> List[ProgressEntry]:
            ids = [str(i) for key in (self._running_key, self._finished_key)
                   for i in self.client.zrevrange(key, 0, limit - 1)]
            return self._fetch(self.client, ids)
        entries: List[ProgressEntry] = self._read(read)
        entries.sort(key=lambda entry: entry.started or 0.0, reverse=True)
        return entries[:limit]

    def _fetch(self, client: redis.Redis, ids: List[str]) -> List[ProgressEntry]:
        """The entries of those of *ids* Redis has, in one round trip (:meth:`_docs`)."""
        return [ProgressEntry(**{name: doc[name] for name in _FIELDS if name in doc})
                for doc in self._docs(client, ids)]

    def _docs(self, client: redis.Redis, ids: List[str]) -> List[Dict[str, Any]]:
        """The stored documents of those of *ids* Redis has, in one round
        trip; one nobody wrote for :data:`STALE_AFTER` seconds shows as ended
        (``aborted``): its process died."""
        pipe = client.pipeline(transaction=False)
        for progress_id in ids:
            pipe.get(self.entry_key(progress_id))
            pipe.pttl(self.entry_key(progress_id))
        answers = pipe.execute()
        docs = []
        for raw, left_ms in zip(answers[::2], answers[1::2]):
            if raw is None:
                continue
            doc = json.loads(raw)
            silent = STALE_AFTER + self.ttl - int(left_ms) / 1000
            if doc.get("state") in RUNNING_STATES and not doc.get("handed") \
                    and silent >= STALE_AFTER:
                doc.update(state=ERROR, reason=ABORTED, finished=self.clock() - silent)
            docs.append(doc)
        return docs
