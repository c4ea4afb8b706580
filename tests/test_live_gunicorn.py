"""The upload demo (``examples.upload_demo:app``, behind ProgressMiddleware)
under gunicorn with ONE worker, in a real gunicorn process.

gunicorn streams the request body to the application, so the middleware sees
it arrive.  What a client can observe depends on the worker class:

* ``sync`` handles one connection at a time: while the worker reads an upload,
  a probe waits in the listen backlog and is answered only once the upload's
  response was sent, when the entry is already ``done``.  So under ``sync`` no
  client ever sees ``uploading``; we check that the upload ends ``done`` with
  exact counts, and that a probe sent mid-upload is indeed answered only then
  (the limit the README's "gunicorn with one worker" row implies).
* ``gthread`` (``--threads 4``) answers probes on other threads while one
  thread reads the upload, so a poller sees ``received`` grow.

Several workers would each keep their own in-memory table, so a probe could
land on a worker that never saw the upload: hence one worker.
"""
from __future__ import annotations

import time
from typing import Any, Iterator

import pytest

from gunicorn_support import gunicorn
from server_support import (
    SlowUpload,
    probe,
    received_while,
    wait_for_state,
    watch,
)

APP = "examples.upload_demo:app"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def sync_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    log = tmp_path_factory.mktemp("gunicorn") / "sync.log"
    with gunicorn(log, APP, "sync") as port:
        yield port


@pytest.fixture(scope="module")
def gthread_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    log = tmp_path_factory.mktemp("gunicorn") / "gthread.log"
    with gunicorn(log, APP, "gthread", "--threads", "4") as port:
        yield port


def _upload(port: int, progress_id: str, size: int, **kwargs: Any) -> SlowUpload:
    client = SlowUpload(port, f"/upload?X-Progress-ID={progress_id}", size, **kwargs)
    client.start()
    return client


# --- sync: one request at a time ------------------------------------------------

def test_sync_upload_ends_done_with_exact_counts(sync_port: int) -> None:
    size = 3 * MiB + 12345
    client = _upload(sync_port, "gu-sync-exact", size, delay=0.005)
    client.join(30)
    assert not client.is_alive() and client.error is None, client.error
    body = f"{size} bytes".encode()
    assert client.reply.startswith(b"HTTP/1.1 200 ") and client.reply.endswith(body), \
        client.reply[:300]
    entry = probe(sync_port, "gu-sync-exact")
    assert (entry["state"], entry["received"], entry["size"], entry["status"],
            entry["reason"]) == ("done", size, size, 200, None), entry
    assert entry["sent"] == entry["response_size"] == len(body), entry
    assert entry["finished"] is not None and entry["finished"] >= entry["started"]


def test_sync_probe_mid_upload_is_answered_only_after_it(sync_port: int) -> None:
    # the worker is busy reading this upload for about a second...
    size = 6 * MiB
    client = _upload(sync_port, "gu-sync-queued", size, piece=256 * 1024, delay=0.04)
    time.sleep(0.3)
    assert client.is_alive(), "the upload ended too soon for the probe to be mid-upload"
    # ...so this probe waits in the backlog, and sees the upload already over
    entry = probe(sync_port, "gu-sync-queued", timeout=30)
    client.join(30)
    assert client.reply.endswith(f"{size} bytes".encode()), client.reply[:300]
    assert (entry["state"], entry["received"], entry["size"]) == ("done", size, size), entry


def test_sync_unknown_id_and_a_second_upload(sync_port: int) -> None:
    assert probe(sync_port, "gu-sync-never-seen")["state"] == "unknown"
    client = _upload(sync_port, "gu-sync-second", 100_000, delay=0)
    client.join(30)
    assert client.reply.endswith(b"100000 bytes")
    assert wait_for_state(sync_port, "gu-sync-second", ("done",))["received"] == 100_000


# --- gthread: probes answered while the upload runs -----------------------------

@pytest.mark.parametrize("in_header", [False, True], ids=["query-id", "header-id"])
def test_gthread_received_grows_while_uploading(gthread_port: int, in_header: bool) -> None:
    progress_id = f"gu-gthread-grows-{int(in_header)}"
    size = 8 * MiB
    if in_header:
        client = SlowUpload(gthread_port, "/upload", size, piece=256 * 1024, delay=0.025,
                            headers=(f"X-Progress-ID: {progress_id}",))
        client.start()
    else:
        client = _upload(gthread_port, progress_id, size, piece=256 * 1024, delay=0.025)
    seen = watch(gthread_port, progress_id, until=lambda: False, interval=0.05, deadline=30)
    client.join(30)
    uploading = received_while(seen, "uploading")
    assert len(uploading) >= 3 and uploading == sorted(uploading), seen
    assert all(0 < value < size for value in uploading), uploading
    assert {a["size"] for a in seen if a["state"] == "uploading"} == {size}
    final = seen[-1]
    assert (final["state"], final["received"], final["size"], final["status"]) == (
        "done", size, size, 200), final
    assert client.reply.endswith(f"{size} bytes".encode()), client.reply[:300]


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_gthread_client_leaving_mid_body_is_aborted(gthread_port: int, reset: bool) -> None:
    progress_id = f"gu-gthread-aborted-{int(reset)}"
    client = _upload(gthread_port, progress_id, 8 * MiB, delay=0.005,
                     abort_after=MiB, reset=reset)
    client.join(30)
    assert not client.is_alive()
    entry = wait_for_state(gthread_port, progress_id, ("error", "done"), deadline=10)
    assert (entry["state"], entry["reason"]) == ("error", "aborted"), entry
    assert 0 < entry["received"] <= MiB and entry["size"] == 8 * MiB, entry
    # the worker goes on serving
    client = _upload(gthread_port, f"{progress_id}-after", 200_000, delay=0)
    client.join(30)
    assert client.reply.endswith(b"200000 bytes")
    assert wait_for_state(gthread_port, f"{progress_id}-after", ("done",))["received"] == 200_000
