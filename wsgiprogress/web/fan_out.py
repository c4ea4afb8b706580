"""
Fan-out
=======

One publish, many mailboxes.  As Nchan's multi-channel publish, the names
may be in the path, split on ``,``, with the body the message
(``POST <mailbox_url>/a,b,c``); or a list in a JSON body at the mailboxes'
root, for names that come from data (``POST <mailbox_url>/`` with
``{"mailboxes": ["a", "b"], "message": "text"}``).  Either way at most
:data:`MAX_FAN_OUT` distinct names, each valid (repeats count once), and
the whole request is refused for one bad name.

.. code-block:: python

    names = fan_out_names("a,b,c")                    # from the path
    listed = read_fan_out(environ, store.max_message_bytes)
    if listed is None:
        ...                                           # 413
    names, message = listed
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

from ..progress.ids import ID_RULE, MAX_ID_LENGTH, is_valid_id
from .cursors import BadRequest
from .message_body import read_message

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

#: Mailboxes one publish may name (Nchan's limit for multiplexed channels).
MAX_FAN_OUT = 255
#: What a JSON fan-out's body may have beyond the message bound: the names,
#: quoted, with their commas, and the keys.
NAMES_ROOM = MAX_FAN_OUT * (MAX_ID_LENGTH + 3) + 64
#: How a fan-out with its list in the body looks, for the 400 that says so.
JSON_FORM = 'application/json {"mailboxes": ["a", "b"], "message": "text"}'


def fan_out_names(path: str) -> List[str]:
    """The distinct mailbox names of a multi-mailbox publish, ``a,b,c``, in order.

    :raises BadRequest: for a bad name or more than :data:`MAX_FAN_OUT`.
    """
    return _checked(path.split(","))


def read_fan_out(environ: WSGIEnvironment, limit: int) -> Optional[Tuple[List[str], str]]:
    """The names and the message of a fan-out whose list is in its JSON body;
    ``None`` when the body has more than *limit* bytes beyond
    :data:`NAMES_ROOM` (not read then) or its message more than *limit*.

    :raises BadRequest: for a body that is not that JSON, a bad name, or
        more than :data:`MAX_FAN_OUT`.
    """
    content_type = str(environ.get("CONTENT_TYPE") or "").partition(";")[0].strip().lower()
    if content_type != "application/json":
        raise BadRequest(f"name the mailbox in the path, or send {JSON_FORM}")
    body = read_message(environ, limit + NAMES_ROOM)
    if body is None:
        return None
    try:
        document: Any = json.loads(body)
    except (ValueError, RecursionError):  # nested deeper than the parser goes: not ours
        raise BadRequest(f"the body is not JSON; send {JSON_FORM}") from None
    names = document.get("mailboxes") if isinstance(document, dict) else None
    message = document.get("message") if isinstance(document, dict) else None
    if not (isinstance(names, list) and names and isinstance(message, str)
            and all(isinstance(name, str) for name in names)):
        raise BadRequest(f"a fan-out's body is {JSON_FORM}")
    try:
        size = len(message.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, which JSON's \ud800 can spell
        raise BadRequest("a message must be UTF-8 text") from None
    return (_checked(names), message) if size <= limit else None


def _checked(names: List[str]) -> List[str]:
    distinct = list(dict.fromkeys(names))
    if len(distinct) > MAX_FAN_OUT:
        raise BadRequest(f"one publish names at most {MAX_FAN_OUT} mailboxes")
    if not all(is_valid_id(name) for name in distinct):
        raise BadRequest(f"invalid mailbox name: each of a,b,c must be {ID_RULE}")
    return distinct
