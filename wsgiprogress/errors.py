"""Exceptions raised by wsgiprogress."""
from __future__ import annotations


class ProgressError(Exception):
    """Base class of every wsgiprogress exception."""


class ConfigurationError(ProgressError, ValueError):
    """A setting is unknown or has a value that cannot work.

    The message is one sentence that names the setting and says how to fix it.
    """
