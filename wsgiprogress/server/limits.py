"""
Connection limits
=================

A parked waiter costs a connection, not a thread, so what bounds waiting
clients on wsgiprogress's server is the number of open file descriptors the
process may have and what one poll loop serves well.  :func:`raise_fd_limit`
raises the soft ``RLIMIT_NOFILE`` to the hard one at start;
:func:`default_connection_limit` is what ``connection_limit`` defaults to;
:func:`wsgiprogress.settings.waiter_limit` keeps a quarter of the
connections for ordinary requests.
"""
from __future__ import annotations

from typing import Optional, Tuple

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

#: Descriptors kept for listeners, the trigger, Redis, logs and files.
FD_RESERVE = 64
#: Connections one poll() loop serves with timely wake-ups (measured: 10,000
#: parked waiters cost ~20 ms per loop turn); select() cannot go past 1024.
POLL_CONNECTIONS = 16384
SELECT_CONNECTIONS = 1000


def fd_limits() -> Tuple[Optional[int], Optional[int]]:
    """The soft and hard ``RLIMIT_NOFILE`` (``None``: unknown or unlimited)."""
    if resource is None:  # pragma: no cover
        return None, None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinity = resource.RLIM_INFINITY
    return (None if soft == infinity else soft), (None if hard == infinity else hard)


def raise_fd_limit() -> Tuple[Optional[int], Optional[int]]:
    """Raise the soft descriptor limit to the hard one (to 16,448 when the
    hard one is unlimited); returns the soft limit before and after."""
    if resource is None:  # pragma: no cover
        return None, None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinity = resource.RLIM_INFINITY
    target = max(soft, POLL_CONNECTIONS + FD_RESERVE) if hard == infinity else hard
    if soft == target:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):  # pragma: no cover - a sandbox may refuse
        return soft, soft
    return soft, target


def default_connection_limit(threads: int, use_poll: bool) -> int:
    """``connection_limit`` when none is given: what the descriptors (after
    :func:`raise_fd_limit`) and the poll loop allow, at least
    ``max(100, 2 * threads)``."""
    _, hard = fd_limits()
    cap = POLL_CONNECTIONS if use_poll else SELECT_CONNECTIONS
    if hard is not None:
        cap = min(cap, hard - FD_RESERVE)
    return max(100, 2 * threads, cap)
