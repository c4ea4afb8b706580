"""
wsgiprogress
============

Live upload and download progress for WSGI applications on threaded servers,
in the formats lighttpd's and nginx's upload-progress clients parse, and
mailboxes that push messages to browsers.

.. code-block:: python

    from wsgiprogress import ProgressMiddleware

    app = ProgressMiddleware(app)

Importing this package pulls in only the standard library.  The package
tree is the architecture (docs/architecture.md): :mod:`~wsgiprogress.settings`
and :mod:`~wsgiprogress.keys` below everything; :mod:`~wsgiprogress.progress`
and :mod:`~wsgiprogress.mailbox` (what is stored); :mod:`~wsgiprogress.backends`
(where); :mod:`~wsgiprogress.web` (the HTTP faces and the one composition);
:mod:`~wsgiprogress.middleware` and :mod:`~wsgiprogress.server` (the two
front doors); :mod:`~wsgiprogress.paste`, :mod:`~wsgiprogress.pyramid` and
:mod:`~wsgiprogress.cli` on top.
"""
from __future__ import annotations

from . import keys, moved
from .errors import ConfigurationError, ProgressError
from .middleware import ProgressMiddleware
from .operations import report
from .progress import ProgressEntry, ProgressStore, ProgressTable, Tracker, is_valid_id
from .web.probe import ProgressProbe

__version__ = "0.2.0.dev0"

__all__ = [
    "ConfigurationError", "ProgressEntry", "ProgressError", "ProgressMiddleware",
    "ProgressProbe", "ProgressStore", "ProgressTable", "Tracker", "is_valid_id", "keys",
    "report",
]

moved.install()


def includeme(config: object) -> None:
    """Pyramid's ``config.include("wsgiprogress")``; see :mod:`wsgiprogress.pyramid`.

    Imports Pyramid only when called, so importing this package does not."""
    from .pyramid import includeme as include_pyramid

    include_pyramid(config)
