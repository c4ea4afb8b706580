"""Fixtures shared by the test modules."""
from __future__ import annotations

from typing import Iterator

import pytest

from redis_support import RedisServer, redis_server


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    """A real redis-server of the module's own, on a free loopback port."""
    with redis_server() as server:
        yield server
