"""
Bounded inflating
=================

With ``websocket_deflate`` on, a client's compressed message is inflated as
its frames arrive.  Deflate packs up to about 1000 bytes into one, so a
frame of 256 KiB (one read) could become 256 MiB before the size of the
message is looked at.  :class:`BoundedDeflate` is wsproto's
``permessage-deflate`` that inflates at most ``websocket_max_message`` bytes
of a message (one more, to tell): past that, the socket closes with 1009
and the rest is never inflated.

.. code-block:: python

    extensions = [BoundedDeflate(policy.max_message)] if policy.deflate else []
"""
from __future__ import annotations

import zlib
from typing import Any, Union

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason


class BoundedDeflate(PerMessageDeflate):
    """``permessage-deflate`` that inflates at most *limit* bytes a message."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.inflated = 0  # of the message arriving

    def frame_inbound_payload_data(self, proto: Any, data: bytes) -> Union[bytes, CloseReason]:
        decompressor = self._decompressor
        if not self._inbound_compressed or not self._inbound_is_compressible \
                or decompressor is None:
            return super().frame_inbound_payload_data(proto, data)
        try:
            inflated = decompressor.decompress(bytes(data), self.limit - self.inflated + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self.inflated += len(inflated)
        if self.inflated > self.limit or decompressor.unconsumed_tail:
            return CloseReason.MESSAGE_TOO_BIG
        return inflated

    def frame_inbound_complete(self, proto: Any, fin: bool) -> Union[bytes, CloseReason, None]:
        if fin:
            self.inflated = 0
        return super().frame_inbound_complete(proto, fin)
