"""
Interim responses
=================

:class:`Interim` sends ``102 Processing`` to a client that asked for it
(``Prefer: processing``) where the server can send interim responses before
the final one (:data:`wsgiprogress.keys.INTERIM`: :mod:`wsgiprogress.server`
to an HTTP/1.1 client, never the middleware): the first on receipt, with
``Location`` of the status monitor, then one with ``Progress`` per report of
the application, until the final response starts (:meth:`Interim.close`).

.. code-block:: python

    interim = Interim(environ[keys.INTERIM], "/operations/<id>")
    operation.listeners.append(interim.processing)
    interim.processing(operation.steps)   # 102, Location, Progress: 0/
"""
from __future__ import annotations

import threading
from typing import Callable, List, Optional, Tuple

from ..operations import Steps, progress_header


class Interim:
    """Sends ``102 Processing`` through *send* (``environ[keys.INTERIM]``),
    the first with ``Location``, until :meth:`close` (the final response)."""

    def __init__(self, send: Callable[[str, List[Tuple[str, str]]], None],
                 location: str) -> None:
        self._send = send
        self._location: Optional[str] = location
        self._lock = threading.Lock()
        self._open = True

    def processing(self, steps: Steps) -> None:
        headers = [("Progress", progress_header(steps))]
        with self._lock:
            if not self._open:
                return
            if self._location is not None:
                headers.insert(0, ("Location", self._location))
                self._location = None
            try:
                self._send("102 Processing", headers)
            except Exception:  # the client left: nothing more to tell it
                self._open = False

    def close(self) -> None:
        with self._lock:
            self._open = False
