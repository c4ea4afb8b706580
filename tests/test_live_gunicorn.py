"""The upload demo (``examples.upload_demo:app``, behind ProgressMiddleware)
under gunicorn's ``sync`` worker, in a real gunicorn process.

The live-upload scenarios every server shares (progress during an upload,
exact final counts, failures, aborted clients, oversize bodies, downloads)
run under gunicorn's ``gthread`` and ``sync`` workers in
``test_live_upload.py``.  What is left here is the ``sync`` worker's own
limit: it handles one connection at a time, so while the worker reads an
upload a probe waits in the listen backlog and is answered only once the
upload's response was sent, when the entry is already ``done``.  No client
ever sees ``uploading`` under ``sync`` (the limit the README's "gunicorn
with one worker" row implies).
"""
from __future__ import annotations

from typing import Iterator

import pytest

from gunicorn_support import gunicorn
from server_support import MiB, SlowUpload, probe, wait_until

APP = "examples.upload_demo:app"


@pytest.fixture(scope="module")
def sync_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    log = tmp_path_factory.mktemp("gunicorn") / "sync.log"
    with gunicorn(log, APP, "sync") as port:
        yield port


def test_sync_probe_mid_upload_is_answered_only_after_it(sync_port: int) -> None:
    # the worker is busy reading this upload for about a second...
    size = 6 * MiB
    client = SlowUpload(sync_port, "/upload?X-Progress-ID=gu-sync-queued", size,
                        piece=256 * 1024, delay=0.04)
    client.start()
    wait_until(lambda: client.sent >= MiB or not client.is_alive(), 10)
    assert client.is_alive(), "the upload ended too soon for the probe to be mid-upload"
    # ...so this probe waits in the backlog, and sees the upload already over
    entry = probe(sync_port, "gu-sync-queued", timeout=30)
    client.join(30)
    assert client.reply.endswith(f"{size} bytes".encode()), client.reply[:300]
    assert (entry["state"], entry["received"], entry["size"]) == ("done", size, size), entry
