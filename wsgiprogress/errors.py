"""Exceptions raised by wsgiprogress."""
from __future__ import annotations


class ProgressError(Exception):
    """Base class of every wsgiprogress exception."""


class UploadCancelled(ProgressError, ConnectionAbortedError):
    """The upload was cancelled (``DELETE`` on the probe, ``store.cancel``):
    what the middleware's ``wsgi.input`` raises where werkzeug, whose
    ``ClientDisconnected`` a client that leaves causes, is not installed."""


def disconnect_error() -> Exception:
    """The error a cancelled upload's next read raises: werkzeug's
    ``ClientDisconnected``, what an application on werkzeug meets when its
    client leaves mid-body (Flask answers it 400), else :class:`UploadCancelled`."""
    message = "the upload was cancelled"
    try:
        from werkzeug.exceptions import ClientDisconnected
    except ImportError:
        return UploadCancelled(message)
    return ClientDisconnected(message)


class ConfigurationError(ProgressError, ValueError):
    """A setting is unknown or has a value that cannot work.

    The message is one sentence that names the setting and says how to fix it.
    """
