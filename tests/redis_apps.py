"""Applications that tests serve in other processes with the Redis backend,
configured by the environment (``WSGIPROGRESS_BACKEND``, ``WSGIPROGRESS_PREFIX``)."""
from __future__ import annotations

import os
from typing import Any

from wsgiprogress import ProgressMiddleware

from server_apps import app as reading_app


def make_app() -> Any:
    """``gunicorn "redis_apps:make_app()"``: the reading app behind the middleware."""
    return ProgressMiddleware(reading_app, backend=os.environ["WSGIPROGRESS_BACKEND"],
                              key_prefix=os.environ["WSGIPROGRESS_PREFIX"])
