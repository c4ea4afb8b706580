"""
Long-running operations
=======================

What happens after the request body arrived: ``Prefer: respond-async,
wait=N`` (RFC 7240) answers ``202 Accepted`` with a status monitor when the
application takes longer than N seconds, the application reports its steps
(:class:`Operation`, :func:`report`), and its final response is kept for the
monitor.  This package is the model: the records (:mod:`.record`), the store
interface (:mod:`.store`) and its in-memory store (:mod:`.memory`; Redis:
:mod:`wsgiprogress.backends.redis.operations`), kept responses (:mod:`.kept`),
the bounded operation threads (:mod:`.pool`) and the ``Prefer`` parser
(:mod:`.prefer`).  The HTTP faces are :mod:`wsgiprogress.web.operations`
(the runner both front doors use) and :mod:`wsgiprogress.web.monitor`.

.. code-block:: python

    app = ProgressMiddleware(app, operations=True)

    def app(environ, start_response):
        for n in range(3):
            work()
            wsgiprogress.report(environ, n + 1, 3, "Knitting sweaters")
"""
from __future__ import annotations

from .kept import KeptBody, KeptResponse
from .memory import MemoryOperations
from .operation import Operation, report
from .pool import OperationPool
from .prefer import Preferences, parse_prefer
from .record import CANCELLED, DONE, ERROR, RUNNING, OperationRecord, Steps, progress_header
from .store import OperationStore, OperationsUnavailable, new_operation_id, operation_key

__all__ = [
    "CANCELLED", "DONE", "ERROR", "RUNNING", "KeptBody", "KeptResponse", "MemoryOperations",
    "Operation", "OperationPool", "OperationRecord", "OperationStore", "OperationsUnavailable",
    "Preferences", "Steps", "new_operation_id", "operation_key", "parse_prefer",
    "progress_header", "report",
]
