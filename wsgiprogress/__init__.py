"""
wsgiprogress
============

Live upload and download progress for WSGI applications on threaded servers,
in the formats lighttpd's and nginx's upload-progress clients parse.

.. code-block:: python

    from wsgiprogress import ProgressMiddleware

    app = ProgressMiddleware(app)

Importing this package pulls in only the standard library.
"""
from __future__ import annotations

from .entry import ProgressEntry
from .errors import ConfigurationError, ProgressError
from .ids import is_valid_id
from .middleware import ProgressMiddleware
from .probe import ProgressProbe
from .store import ProgressStore
from .table import ProgressTable
from .tracker import Tracker

__version__ = "0.1.0.dev0"

__all__ = [
    "ConfigurationError", "ProgressEntry", "ProgressError", "ProgressMiddleware",
    "ProgressProbe", "ProgressStore", "ProgressTable", "Tracker", "is_valid_id",
]


def includeme(config: object) -> None:
    """Pyramid's ``config.include("wsgiprogress")``; see :mod:`wsgiprogress.pyramid`.

    Imports Pyramid only when called, so importing this package does not."""
    from .pyramid import includeme as include_pyramid

    include_pyramid(config)
