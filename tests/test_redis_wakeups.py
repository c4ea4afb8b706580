"""The wake-up channel across processes (a real redis-server): news published
once the channel says it is up reaches the waiters of this process."""
from __future__ import annotations

import queue
from typing import List, Optional

import redis as redis_client

from wsgiprogress.backends.redis.wakeups import RedisWakeups

from redis_support import HOST, HoldingProxy, RedisServer


def test_news_published_once_the_channel_is_up_reaches_the_handler(
        redis: RedisServer) -> None:
    # Redis runs this process's SUBSCRIBE half a second after it was sent;
    # news published by another process meanwhile would be lost, so the
    # channel is up (and wakes everyone) only once Redis has confirmed it
    heard: "queue.Queue[Optional[List[str]]]" = queue.Queue()
    with HoldingProxy(redis.port, b"SUBSCRIBE", 0.5) as proxy:
        client = redis_client.Redis(host=HOST, port=proxy.port, decode_responses=True)
        wakeups = RedisWakeups(client, {"wsgiprogress:changed": heard.put})
        try:
            assert wakeups.connected.wait(10)
            assert heard.get(timeout=5) is None  # everyone woken: news may have been missed
            redis.client().publish("wsgiprogress:changed", "upload-1 upload-2")
            assert heard.get(timeout=5) == ["upload-1", "upload-2"]
        finally:
            wakeups.close()
            client.close()

