"""
Probe dialects
==============

How a progress entry is written for each kind of client.

``native``
    Our JSON: every field of :class:`~wsgiprogress.progress.entry.ProgressEntry`,
    ``eta`` and ``id``.  JSONP through ``callback``.

``lighttpd``
    lighttpd2 ``mod_progress``: ``{"state": "running", "received": …, "sent":
    …, "request_size": …, "response_size": …}``; formats ``json``, ``jsonp``
    (callback from ``X-Progress-Callback``, default ``progress``, no trailing
    semicolon) and ``legacy`` (``new Object({…})``).

``nginx``
    nginx upload progress module: ``{ "state" : "uploading", "received" : …,
    "size" : … }`` followed by CRLF; JSONP through ``callback`` as
    ``cb({…});``; ``legacy`` is its single-quoted ``new Object({…})``.

How our states map onto the dialects:

============== ============ ====================================
native         lighttpd     nginx
============== ============ ====================================
``unknown``    ``unknown``  ``starting``
``starting``   ``running``  ``starting``
``uploading``  ``running``  ``uploading``
``processing`` ``running``  ``uploading`` (``received == size``)
``done``       ``done``     ``done``
``error``      ``error``    ``error``
============== ============ ====================================

Deliberate differences from the modules, each fixing one of their defects: a
3xx response is ``done`` in every dialect (lighttpd2 said ``error``); an
unknown body size is ``null`` in nginx's ``size`` (nginx printed negative
numbers) and ``-1`` in lighttpd's ``request_size`` (as lighttpd2 meant it);
``status`` is ``0`` on an error that never got an HTTP status (an aborted
upload), as ``XMLHttpRequest.status`` is for network errors.
"""
from __future__ import annotations

import json
from typing import Any, Dict, NamedTuple, Optional, Tuple

from ..progress.entry import DONE, ERROR, PROCESSING, STARTING, UNKNOWN, UPLOADING, ProgressEntry

JSON = "application/json"
JAVASCRIPT = "application/javascript"


class Dialect(NamedTuple):
    """What a dialect accepts: its formats and how it names the JSONP callback."""

    name: str
    formats: Tuple[str, ...]
    callback_param: str
    default_callback: Optional[str]


DIALECTS = {
    "native": Dialect("native", ("json", "jsonp"), "callback", None),
    "lighttpd": Dialect("lighttpd", ("json", "jsonp", "legacy"),
                        "X-Progress-Callback", "progress"),
    "nginx": Dialect("nginx", ("json", "jsonp", "legacy"), "callback", ""),
}


def content_type(dialect: str, fmt: str) -> str:
    """The Content-Type of a probe answer in *dialect* and format *fmt*."""
    if fmt == "json":
        return JSON
    return "text/javascript" if dialect == "nginx" and fmt == "legacy" else JAVASCRIPT


def render(dialect: str, fmt: str, callback: Optional[str],
           progress_id: str, entry: Optional[ProgressEntry]) -> bytes:
    """The body of a probe answer (its Content-Type: :func:`content_type`).

    *entry* ``None`` means unknown.  *fmt* must be one the dialect offers;
    *callback* must already be validated (see :func:`wsgiprogress.web.probe.is_valid_callback`).
    """
    if dialect == "lighttpd":
        return _lighttpd(fmt, callback, entry)
    if dialect == "nginx":
        return _nginx(fmt, callback, entry)
    data = (entry or ProgressEntry(progress_id, UNKNOWN)).to_dict()
    body = json.dumps(data)
    if fmt == "jsonp":
        return f"{callback}({body});".encode()
    return body.encode()


def _error_status(entry: ProgressEntry) -> int:
    return entry.status or 0


def _lighttpd(fmt: str, callback: Optional[str], entry: Optional[ProgressEntry]) -> bytes:
    fields: Dict[str, Any]
    if entry is None:
        fields = {"state": "unknown"}
    elif entry.state == ERROR:
        fields = {"state": "error", "status": _error_status(entry)}
    else:
        fields = {
            "state": "done" if entry.state == DONE else "running",
            "received": entry.received, "sent": entry.sent,
            "request_size": -1 if entry.size is None else entry.size,
            "response_size": entry.response_size or 0,
        }
    body = json.dumps(fields)
    if fmt == "legacy":
        return f"new Object({body})".encode()
    if fmt == "jsonp":
        return f"{callback}({body})".encode()
    return body.encode()


def _nginx_fields(entry: Optional[ProgressEntry]) -> Dict[str, Any]:
    if entry is None or entry.state == STARTING:
        return {"state": "starting"}
    if entry.state == ERROR:
        return {"state": "error", "status": _error_status(entry)}
    if entry.state == DONE:
        return {"state": "done"}
    assert entry.state in (UPLOADING, PROCESSING)
    return {"state": "uploading", "received": entry.received, "size": entry.size}


def _nginx(fmt: str, callback: Optional[str], entry: Optional[ProgressEntry]) -> bytes:
    fields = _nginx_fields(entry)
    if fmt == "legacy":
        legacy = _nginx_object(fields, "'")
        return f"new Object({legacy})\r\n".encode()
    body = _nginx_object(fields, '"')
    if fmt == "jsonp":
        return f"{callback or ''}({body});\r\n".encode()
    return f"{body}\r\n".encode()


def _nginx_object(fields: Dict[str, Any], quote: str) -> str:
    """nginx's spacing: ``{ "state" : "uploading", "received" : 1 }``."""
    items = []
    for key, value in fields.items():
        if value is None:
            text = "null"
        elif isinstance(value, str):
            text = quote + value + quote
        else:
            text = str(int(value))
        items.append(quote + key + quote + " : " + text)
    return "{ " + ", ".join(items) + " }"
