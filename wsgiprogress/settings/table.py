"""
The settings table
==================

Every option of wsgiprogress, declared once: name, converter, default, help
text and the scope that reads it.  :mod:`wsgiprogress.settings` builds the
groups, the checks and the spellings from it.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Tuple

from .converters import (
    as_backend,
    as_bool,
    as_count,
    as_dialect,
    as_header_name,
    as_methods,
    as_optional_count,
    as_optional_directory,
    as_optional_path,
    as_optional_size,
    as_optional_token,
    as_origins,
    as_path,
    as_positive_seconds,
    as_prefix,
    as_rate,
    as_seconds,
    as_size,
)

#: The shortest and the longest progress ID (:mod:`wsgiprogress.progress.ids`).
ID_LENGTHS = (8, 128)


def as_id_length(value: Any) -> int:
    """A whole number from 8 to 128: the length of a progress ID."""
    low, high = ID_LENGTHS
    try:
        length = as_count(value)
    except ValueError:
        length = 0
    if not low <= length <= high:
        raise ValueError(f"expected a whole number from {low} to {high}, not {value!r}")
    return length


class Setting(NamedTuple):
    """One option: its *name*, a *convert* callable, a *default*, *help* and
    the *scope* that reads it."""

    name: str
    convert: Callable[[Any], Any]
    default: Any
    help: str
    scope: str


#: Every setting, once.
SETTINGS: Tuple[Setting, ...] = (
    # -- the probe ------------------------------------------------------------
    Setting("progress_url", as_path, "/progress",
            "URL path of the progress probe", "probe"),
    Setting("dialect", as_dialect, "native",
            "default probe format: native, lighttpd or nginx", "probe"),
    Setting("id_name", as_header_name, "X-Progress-ID",
            "header and query parameter that carries the progress ID", "probe"),
    Setting("allowed_origins", as_origins, (),
            "origins whose pages may use the probe, mailboxes, operation monitors "
            "and resumable uploads cross-origin ('*' for any); empty: CORS off", "probe"),
    Setting("debug", as_bool, False,
            "log every tracked request and every probe answer", "probe"),
    Setting("min_id_length", as_id_length, ID_LENGTHS[0],
            "shortest progress ID tracked and answered; the probe answers 400 to a "
            "shorter one and such uploads run untracked (32: 128 random bits in hex, "
            "which nobody guesses)", "probe"),
    # -- where progress and mailboxes live -------------------------------------
    Setting("backend", as_backend, "memory://",
            "where progress and mailboxes live: memory:// (this process) or "
            "redis://host:port/db (shared by every process using it)", "backend"),
    Setting("key_prefix", as_prefix, "wsgiprogress:",
            "prefix of every Redis key, so applications can share one Redis", "store"),
    Setting("ttl", as_seconds, 30.0,
            "seconds a finished request's progress stays visible", "store"),
    Setting("capacity", as_count, 10_000,
            "most progress entries held; beyond it new requests run untracked", "store"),
    # -- waiting clients: long-polls (wait=) and event streams ------------------
    Setting("max_wait", as_seconds, 30.0,
            "longest a long-poll (wait=) waits for a change, in seconds", "wait"),
    Setting("sse_keepalive", as_positive_seconds, 15.0,
            "seconds between event-stream comment keepalives", "wait"),
    Setting("sse_retry", as_count, 3000,
            "reconnection delay hint sent to event-stream clients, in milliseconds", "wait"),
    Setting("sse_max_duration", as_seconds, 300.0,
            "seconds after which an event stream ends (the client resumes at once)", "wait"),
    Setting("max_waiters", as_optional_count, None,
            "most clients waiting at once (long-polls, streams), then 503; default: "
            "connection_limit less a quarter (our server), 50 (middleware)", "waiters"),
    # -- mailboxes ------------------------------------------------------------
    Setting("mailbox", as_bool, False,
            "serve the backend's mailboxes at mailbox_url (the app finds the store in "
            "environ['wsgiprogress.mailbox'])", "mailbox"),
    Setting("mailbox_url", as_path, "/mailbox",
            "URL path under which mailboxes are served: <mailbox_url>/<name>", "mailbox"),
    Setting("publish", as_bool, False,
            "accept POST <mailbox_url>/<name> to publish (needs authorize or "
            "publish_token)", "mailbox"),
    Setting("publish_token", as_optional_token, None,
            "bearer token that allows publishing, reading stats and the dashboard",
            "mailbox"),
    Setting("max_messages", as_count, 100,
            "messages kept per mailbox; older ones are dropped (readers see a gap)",
            "mailbox"),
    Setting("max_bytes", as_size, 1024 * 1024,
            "bytes of message data kept per mailbox", "mailbox"),
    Setting("max_message_bytes", as_size, 64 * 1024,
            "the largest message accepted; above it 413", "mailbox"),
    Setting("max_age", as_positive_seconds, 3600.0,
            "seconds a message is kept", "mailbox"),
    Setting("max_mailboxes", as_count, 10_000,
            "mailboxes held at once; beyond it 503", "mailbox"),
    Setting("mailbox_ttl", as_positive_seconds, 300.0,
            "seconds after its last read that a mailbox is removed", "mailbox"),
    # -- the operator dashboard --------------------------------------------------
    Setting("dashboard_url", as_optional_path, None,
            "URL path of the operator dashboard, protected like the stats (needs "
            "publish_token or authorize); none: off", "dashboard"),
    # -- long-running operations: Prefer: respond-async, the status monitor ------
    Setting("operations", as_bool, False,
            "honour Prefer: respond-async (202, a monitor) and processing (102)",
            "operations"),
    Setting("operations_url", as_path, "/operations",
            "URL path of status monitors: <operations_url>/<id>", "operations"),
    Setting("operations_max_wait", as_seconds, 10.0,
            "longest wait=N of Prefer: respond-async honoured", "operations"),
    Setting("operations_threads", as_count, 4,
            "threads for respond-async; all busy: the request runs as usual",
            "operations"),
    Setting("max_operations", as_count, 10_000,
            "monitors held; beyond it Prefer is not applied", "operations"),
    Setting("operations_ttl", as_positive_seconds, 600.0,
            "seconds a finished monitor and its response are kept", "operations"),
    Setting("max_kept_response", as_size, 16 * 1024 * 1024,
            "largest final response kept (larger: 410 Gone)", "operations"),
    Setting("max_kept_bytes", as_size, 256 * 1024 * 1024,
            "final responses kept (by a process; with Redis, by all); oldest make room",
            "operations"),
    # -- resumable uploads (tus 1.0, IETF resumable uploads) ---------------------------
    Setting("resumable_dir", as_optional_directory, None,
            "directory of resumable uploads (turns on)", "resumable"),
    Setting("resumable_url", as_path, "/files/",
            "URL of upload resources", "resumable"),
    Setting("resumable_ttl", as_positive_seconds, 86400.0,
            "upload lifetime in seconds", "resumable"),
    Setting("resumable_max_size", as_size, 1024 ** 3,
            "largest upload; above it 413", "resumable"),
    Setting("resumable_max_uploads", as_count, 1000,
            "most uploads kept; then 503", "resumable"),
    Setting("resumable_max_disk", as_optional_size, None,
            "bytes all uploads may reserve; then 507", "resumable"),
    Setting("resumable_lock_ttl", as_positive_seconds, 30.0,
            "with the Redis backend: seconds an upload's lock outlives a host "
            "that died holding it", "resumable"),
    # -- which requests are counted ----------------------------------------------
    Setting("methods", as_methods, ("POST",),
            "HTTP methods whose requests are tracked", "tracking"),
    Setting("per_file", as_bool, False,
            "list each file of a multipart upload in the native probe; "
            "needs wsgiprogress[multipart]",
            "tracking"),
    # -- one front door each -----------------------------------------------------
    Setting("max_request_size", as_optional_size, None,
            "answer 413 to a tracked request whose Content-Length exceeds this "
            "(our server: max_request_body_size)", "middleware"),
    Setting("probe_threads", as_count, 2,
            "threads that answer probes, apart from the application's threads", "server"),
    Setting("header_timeout", as_seconds, 30.0,
            "seconds from a request's first byte to its whole head, then 408; 0: none",
            "server"),
    Setting("body_timeout", as_seconds, 30.0,
            "seconds a body may take, plus one per body_min_rate bytes, then 408; "
            "0: none", "server"),
    Setting("body_min_rate", as_rate, 500.0,
            "bytes that earn a body one more second", "server"),
    # -- WebSocket on our server (the extra: pip install wsgiprogress[websocket]) --
    Setting("websocket", as_bool, False,
            "WebSocket for mailboxes, progress and apps (needs wsproto)", "websocket"),
    Setting("websocket_max_message", as_size, 1024 * 1024,
            "largest message from a client, then close 1009", "websocket"),
    Setting("websocket_max_queued", as_size, 1024 * 1024,
            "bytes unread by a client, then close 1008", "websocket"),
    Setting("websocket_ping", as_seconds, 30.0,
            "seconds between pings; 0: none", "websocket"),
    Setting("websocket_idle_timeout", as_seconds, 300.0,
            "silent seconds, then close 1001; 0: none", "websocket"),
    Setting("websocket_deflate", as_bool, False,
            "permessage-deflate (~100 KiB per socket)", "websocket"),
)
