"""
Optional packages
=================

What a setting needs beyond the standard library, checked when a front door
is made (:func:`wsgiprogress.settings.check_front`), so a feature turned on
without its extra fails at start with the ``pip install`` line that fixes it,
and a Redis URL that redis-py would refuse only on its first call fails there too.

.. code-block:: python

    from wsgiprogress.settings.extras import multipart_problem

    problem = multipart_problem()   # None, or what is missing and how to install it
"""
from __future__ import annotations

import re
from typing import Optional, Tuple

#: The werkzeug releases whose sans-IO ``MultipartDecoder`` (werkzeug 2.0+)
#: keeps its buffer bounded on large file parts: 2.3.8 and 3.0.1 fixed
#: CVE-2023-46136 (a part with an early CR or LF was buffered whole and
#: rescanned on every read), which matters on our server's I/O thread.
MULTIPART_FIXED = ((2, 3, 8), (3, 0, 1))
MULTIPART_INSTALL = 'pip install "wsgiprogress[multipart]"'


def _release(version: str) -> Tuple[int, ...]:
    numbers = []
    for part in version.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def multipart_fixed(version: str) -> bool:
    """True for a werkzeug *version* whose multipart decoder per-file
    progress may use (2.3.8 and later on 2.3, 3.0.1 and later)."""
    release = _release(version)
    old, new = MULTIPART_FIXED
    return old <= release < (3,) or release >= new


def multipart_problem() -> Optional[str]:
    """``None`` when werkzeug's multipart decoder is installed and recent
    enough, else what is wrong and the line that installs it."""
    from importlib import metadata
    try:
        version = metadata.version("werkzeug")
    except metadata.PackageNotFoundError:
        return f"werkzeug is not installed: {MULTIPART_INSTALL}"
    if not multipart_fixed(version):
        return (f"werkzeug {version} is too old (2.3.8 or 3.0.1 and later): "
                f"{MULTIPART_INSTALL}")
    return None


WEBSOCKET_INSTALL = "pip install 'wsgiprogress[websocket]'"


def websocket_problem() -> Optional[str]:
    """``None`` when wsproto, which frames our server's WebSockets, is
    installed, else the line that installs it."""
    import importlib
    try:
        importlib.import_module("wsproto")
    except ImportError:
        return f"wsproto is not installed: {WEBSOCKET_INSTALL}"
    return None


_UNKNOWN_ARGUMENT = re.compile(r"unexpected keyword argument '([^']*)'")


REDIS_INSTALL = 'pip install "wsgiprogress[redis]"'


def redis_url_problem(url: str) -> Optional[str]:
    """``None`` when redis-py is installed and takes Redis *url*'s query,
    else what is wrong: redis-py hands an unknown query argument to every
    connection it opens, so a typo would fail each Redis call, never the start."""
    import importlib
    try:
        redis = importlib.import_module("redis")
    except ImportError:
        return f"{url!r} needs redis-py, which is not installed: {REDIS_INSTALL}, or use memory://"
    try:  # builds a connection object, connects nothing
        pool = redis.BlockingConnectionPool.from_url(url)
        pool.connection_class(**pool.connection_kwargs)
    except (TypeError, ValueError) as exc:
        unknown = _UNKNOWN_ARGUMENT.search(str(exc))
        if unknown is None:
            return f"redis-py refuses {url!r}: {exc}"
        return (f"redis-py knows no {unknown.group(1)!r} in the query of {url!r}: "
                "remove it, or see redis-py's from_url for the arguments it takes")
    return None
