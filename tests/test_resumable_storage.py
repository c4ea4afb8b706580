"""The upload resource and its directory storage, without HTTP: IDs are 192
random bits and nothing else is accepted as one (no path leaves the
directory), expiry on a fake clock, offsets that move only on commit, bytes
past the offset cut off by the next append, and parts a killed process left
behind swept."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List

import pytest

from wsgiprogress.resumable.appender import Appender
from wsgiprogress.resumable.storage import DirectoryStorage, UploadBusy
from wsgiprogress.resumable.upload import Target, Upload, is_upload_id, new_upload_id


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def storage_at(path: Path, clock: Clock) -> DirectoryStorage:
    return DirectoryStorage(str(path), ttl=60, max_size=1000, max_uploads=10, max_disk=None,
                            clock=clock)


def upload_in(storage: DirectoryStorage, length: int = 100) -> Upload:
    upload = Upload.new(Target("POST", "", "/upload", "", {}), "tus", length, storage.clock(),
                        storage.ttl)
    storage.create(upload)
    return upload


def test_ids_are_unique_and_unguessable() -> None:
    ids = {new_upload_id() for _ in range(10_000)}
    assert len(ids) == 10_000 and all(is_upload_id(i) and len(i) == 32 for i in ids)


@pytest.mark.parametrize("value", [
    "", "../../etc/passwd", "A" * 31 + "/", "A" * 31 + ".", "A" * 33, "A" * 31 + "\n",
    "A" * 31 + "\0", "..", "/" + "A" * 31, "A" * 16 + "%2F" + "A" * 13,
])
def test_nothing_else_is_an_id_and_no_path_leaves_the_directory(value: str,
                                                                tmp_path: Path) -> None:
    storage = storage_at(tmp_path, Clock())
    assert not is_upload_id(value)
    assert storage.get(value) is None
    with pytest.raises(ValueError):
        storage.path(value, ".bin")
    with storage.locked(value) as upload:
        assert upload is None


def test_an_upload_round_trips_and_expires_after_its_last_change(tmp_path: Path) -> None:
    clock = Clock()
    storage = storage_at(tmp_path, clock)
    upload = upload_in(storage)
    assert storage.get(upload.id) == upload
    clock.now += 59
    with storage.locked(upload.id) as locked, Appender(storage, locked) as out:
        out.write(b"x" * 10)
    clock.now += 59  # 118 s after creation, 59 s after the append
    assert storage.get(upload.id).offset == 10
    clock.now += 2
    assert storage.get(upload.id) is None
    assert os.listdir(tmp_path) == []


def test_the_offset_moves_only_on_commit_and_stray_bytes_are_cut(tmp_path: Path) -> None:
    storage = storage_at(tmp_path, Clock())
    upload = upload_in(storage)
    with storage.locked(upload.id) as locked, Appender(storage, locked) as out:
        out.write(b"a" * 30)
        assert storage.get(upload.id).offset == 0  # not yet committed
    assert storage.get(upload.id).offset == 30
    # a process killed mid-append left bytes past the offset
    with open(tmp_path / f"{upload.id}.bin", "ab") as f:
        f.write(b"junk")
    with storage.locked(upload.id) as locked, Appender(storage, locked) as out:
        out.write(b"b" * 5)
    assert (tmp_path / f"{upload.id}.bin").read_bytes() == b"a" * 30 + b"b" * 5


def test_one_append_at_a_time(tmp_path: Path) -> None:
    storage = storage_at(tmp_path, Clock())
    upload = upload_in(storage)
    with storage.locked(upload.id):
        with pytest.raises(UploadBusy):
            with storage.locked(upload.id):
                pass
    with storage.locked(upload.id) as again:
        assert again is not None


def test_a_sweep_removes_bodies_a_killed_process_left(tmp_path: Path) -> None:
    clock = Clock()
    storage = storage_at(tmp_path, clock)
    upload = upload_in(storage)
    stale = Path(storage.part_path(upload.id))
    stale.write_bytes(b"half a body")
    os.utime(stale, (clock.now - 61, clock.now - 61))
    fresh = Path(storage.part_path(upload.id))
    fresh.write_bytes(b"arriving")
    os.utime(fresh, (clock.now, clock.now))
    left: List[Upload] = storage.sweep()
    assert [u.id for u in left] == [upload.id]
    assert not stale.exists() and fresh.exists()
