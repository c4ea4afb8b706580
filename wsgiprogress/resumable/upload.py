"""
The upload resource
===================

An :class:`Upload` is one resumable upload, whatever protocol made it: its
unguessable ID, the *target* (the method, URI and headers of the request
that created it, which the application finally sees), the expected length
(known, or deferred until a later request sets it), the bytes stored, its
state, its expiry and its metadata.

.. code-block:: python

    upload = Upload.new(target, length=3_000_000, now=time.time(), ttl=86400)
    upload.id          # 32 characters of base64url: 192 bits from secrets
    is_upload_id(upload.id)   # True; "../etc" is not
"""
from __future__ import annotations

import dataclasses
import re
import secrets
from typing import Any, Dict, List, Optional, Tuple

#: Random bytes in an upload ID: 192 bits, more than the 128 unguessable needs.
ID_BYTES = 24
_ID = re.compile(r"[A-Za-z0-9_-]{32}\Z")

#: Bytes arrive (or may arrive).
ACTIVE = "active"
#: Every byte is stored; the application is being called (once).
COMPLETING = "completing"
#: The application answered; its response is kept.
COMPLETE = "complete"

#: A tus partial upload (``Upload-Concat: partial``): never given to the application.
PARTIAL = "partial"
#: A tus final upload (``Upload-Concat: final;...``): the concatenation of partials.
FINAL = "final"


def new_upload_id() -> str:
    """A fresh upload ID: 192 bits from :mod:`secrets`, base64url."""
    return secrets.token_urlsafe(ID_BYTES)


def is_upload_id(value: str) -> bool:
    """True for what :func:`new_upload_id` makes: 32 characters of
    ``A-Z a-z 0-9 _ -``; nothing with a dot or a slash ever is."""
    return _ID.match(value) is not None


@dataclasses.dataclass
class Target:
    """The request that created an upload, as the application will see it.

    :param headers: the WSGI environ's header keys (``HTTP_*``,
        ``CONTENT_TYPE``) and values, protocol headers left out.
    """

    method: str
    script_name: str
    path_info: str
    query_string: str
    headers: Dict[str, str]

    @property
    def uri(self) -> str:
        query = f"?{self.query_string}" if self.query_string else ""
        return f"{self.script_name}{self.path_info}{query}"


@dataclasses.dataclass
class Upload:
    """One upload resource; what the storage keeps beside its bytes."""

    id: str
    target: Target
    protocol: str
    length: Optional[int]
    offset: int
    state: str
    created: float
    expires: float
    metadata: Optional[str] = None
    progress_id: Optional[str] = None
    concat: Optional[str] = None
    parts: List[str] = dataclasses.field(default_factory=list)
    #: The kept final response: status line and headers (its body is a file).
    response: Optional[Tuple[str, List[Tuple[str, str]]]] = None

    @classmethod
    def new(cls, target: Target, protocol: str, length: Optional[int], now: float,
            ttl: float, upload_id: Optional[str] = None, **fields: Any) -> Upload:
        """A new, empty upload expiring *ttl* seconds from *now*, with a
        fresh ID unless *upload_id* was made already (:func:`new_upload_id`)."""
        return cls(upload_id or new_upload_id(), target, protocol, length, 0, ACTIVE, now,
                   now + ttl, **fields)

    @property
    def finished(self) -> bool:
        """True once every byte is stored and the length is known."""
        return self.length is not None and self.offset >= self.length

    def to_json(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> Upload:
        fields = dict(data)
        fields["target"] = Target(**fields["target"])
        response = fields.get("response")
        if response is not None:
            fields["response"] = (response[0], [(k, v) for k, v in response[1]])
        return cls(**fields)
