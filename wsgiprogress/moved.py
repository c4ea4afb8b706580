"""
Moved modules
=============

wsgiprogress 0.2 grouped its flat modules into packages, one per concern.
:data:`MOVED` maps every old module path to its new one; importing an old
path still works, gives the new module and warns once
(:class:`DeprecationWarning`).  CHANGES.txt lists the same moves.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import Any, Optional, Sequence

#: Old module path -> new module path.
MOVED = {
    "wsgiprogress.entry": "wsgiprogress.progress.entry",
    "wsgiprogress.ids": "wsgiprogress.progress.ids",
    "wsgiprogress.tracker": "wsgiprogress.progress.tracker",
    "wsgiprogress.store": "wsgiprogress.progress.store",
    "wsgiprogress.table": "wsgiprogress.progress.table",
    "wsgiprogress.stream": "wsgiprogress.middleware",
    "wsgiprogress.probe": "wsgiprogress.web.probe",
    "wsgiprogress.dialects": "wsgiprogress.web.dialects",
    "wsgiprogress.responses": "wsgiprogress.web.responses",
    "wsgiprogress.sse": "wsgiprogress.web.sse",
    "wsgiprogress.streams": "wsgiprogress.web.event_stream",
    "wsgiprogress.dashboard": "wsgiprogress.web.dashboard",
    "wsgiprogress.mailbox_app": "wsgiprogress.web.mailbox",
    "wsgiprogress.redis_progress": "wsgiprogress.backends.redis.progress",
    "wsgiprogress.redis_mailbox": "wsgiprogress.backends.redis.mailbox",
    "wsgiprogress.redis_writer": "wsgiprogress.backends.redis.writer",
    "wsgiprogress.redis_events": "wsgiprogress.backends.redis.wakeups",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: Any) -> Any:
        return importlib.import_module(self.target)

    def exec_module(self, module: Any) -> None:
        """The new module ran when it was imported."""


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds the old paths of :data:`MOVED`."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]],
                  target: Any = None) -> Any:
        new = MOVED.get(fullname)
        if new is None:
            return None
        warnings.warn(f"{fullname} moved to {new}", DeprecationWarning, stacklevel=2)
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    """Let the old paths import (idempotent)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
