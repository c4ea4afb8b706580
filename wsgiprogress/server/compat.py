"""
waitress releases
=================

The hooks of :mod:`wsgiprogress.server` work on waitress 1.4.4 and later;
what differs between releases is decided here, from what the installed
waitress has rather than from its version number.
"""
from __future__ import annotations

import inspect
from importlib.metadata import PackageNotFoundError, version

from waitress import wasyncore
from waitress.adjustments import Adjustments

#: waitress before 2.0 cannot read ahead (no ``channel_request_lookahead``): it
#: does not read a connection while its request runs, so a client that leaves
#: goes unseen.  There the channel peeks at the socket while a request runs,
#: as 2.0+ reads with ``channel_request_lookahead=1``, and the task gives the
#: application ``waitress.client_disconnected`` as 2.0+ does.
PEEK_FOR_DEPARTURE = "channel_request_lookahead" not in dict(Adjustments._params)

#: waitress 2.1.1 and later can ``send`` without closing the connection on a
#: disconnect (``do_close=False``), as a task's write must: a task may then
#: write straight to the socket (:meth:`SentBytes.write_soon
#: <wsgiprogress.server.sending.SentBytes.write_soon>`).
SEND_WITHOUT_CLOSING = "do_close" in inspect.signature(wasyncore.dispatcher.send).parameters


def waitress_version() -> str:
    """The installed waitress's version, as its metadata says."""
    try:
        return version("waitress")
    except PackageNotFoundError:  # pragma: no cover - waitress without metadata
        return "unknown"
