"""Per-file progress counts a part's bulk by its length and lets werkzeug's
decoder read only the part heads and the bytes around places where a
delimiter may be: its listing must be the one werkzeug's decoder gives when it
is fed every byte of the same reads (the reference), however adversarial the
body and however the reads fall."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_per_file import recent_werkzeug

from wsgiprogress.progress.files import (
    MAX_FILES,
    MAX_NAME,
    MAX_PARTS,
    SKIP_AT_LEAST,
    WINDOW,
    FileProgress,
    skip_needle,
)

#: The reference is werkzeug's decoder as 3.1 made it: before, it holds a
#: part's data from a line break and a marker (no delimiter) up to the next
#: line break, unbounded, and misses delimiters split across some reads (a
#: file counted through the next part), which per-file progress, fed windows
#: around the delimiters, does not; test_per_file covers those releases.
pytestmark = [recent_werkzeug, pytest.mark.skipif(
    not hasattr(__import__("werkzeug.sansio.multipart").sansio.multipart.MultipartDecoder,
                "_last_partial_boundary_index"),
    reason="the reference needs werkzeug 3.1's decoder")]

#: Boundaries as browsers and tools send them, and ones made to confuse.
BOUNDARIES = [
    "----WebKitFormBoundaryq7MA4YWxkTrZu0gW",  # Chrome, Safari
    "----geckoformboundary2f6c3b8e9a1d4c7b",  # Firefox
    "------------------------3f1b0c7a9d2e4f60",  # curl
    "3f1b0c7a9d2e4f603f1b0c7a9d2e4f60",  # requests
    "x",
    "-a" * 35,
    "-" * 70,
]
LINE_BREAKS = [b"\r\n", b"\n", b"\r"]


def reference(body: bytes, boundary: str, ends: Sequence[int]) -> List[Dict[str, Any]]:
    """The files werkzeug's decoder finds when fed every byte of the reads
    ending at *ends*, listed within per-file progress's bounds."""
    from werkzeug.sansio import multipart

    decoder = multipart.MultipartDecoder(boundary.encode())
    files: List[Dict[str, Any]] = []
    current: Optional[Dict[str, Any]] = None
    parts = 0
    try:
        for start, end in zip([0, *ends], ends):
            decoder.receive_data(body[start:end])
            while True:
                event = decoder.next_event()
                if isinstance(event, (multipart.NeedData, multipart.Epilogue)):
                    break
                if isinstance(event, (multipart.File, multipart.Field)):
                    parts += 1
                    if parts > MAX_PARTS:
                        return files
                    current = None
                    if isinstance(event, multipart.File) and len(files) < MAX_FILES:
                        kind = event.headers.get("Content-Type")
                        current = {"field_name": event.name[:MAX_NAME],
                                   "filename": event.filename[:MAX_NAME],
                                   "content_type": None if kind is None else kind[:MAX_NAME],
                                   "received": 0, "done": False}
                        files.append(current)
                elif isinstance(event, multipart.Data) and current is not None:
                    current["received"] += len(event.data)
                    if not event.more_data:
                        current["done"], current = True, None
            if isinstance(event, multipart.Epilogue):
                break
    except Exception:  # malformed: the listing stops where it stands
        pass
    return files


def listed(body: bytes, boundary: str, ends: Sequence[int]) -> List[Dict[str, Any]]:
    files = FileProgress.for_content_type(f"multipart/form-data; boundary={boundary}")
    assert files is not None
    for start, end in zip([0, *ends], ends):
        files.feed(body, start, end)
    return files.snapshot()


def reads(size: int, cuts: Sequence[int]) -> List[int]:
    """Where reads of the sizes *cuts* (over and over) end in *size* bytes."""
    ends, turn = [0], 0
    while ends[-1] < size:
        ends.append(min(size, ends[-1] + cuts[turn % len(cuts)]))
        turn += 1
    return ends[1:]


def same_as_reference(body: bytes, boundary: str, ends: Sequence[int]) -> None:
    expected = reference(body, boundary, ends)
    assert listed(body, boundary, ends) == expected
    # and read in one piece, or through a bytes object per read
    assert listed(body, boundary, [len(body)]) == reference(body, boundary, [len(body)])
    files = FileProgress.for_content_type(f"multipart/form-data; boundary={boundary}")
    assert files is not None
    for start, end in zip([0, *ends], ends):
        files.feed(body[start:end])
    assert files.snapshot() == expected


# -- generated bodies ------------------------------------------------------------------


@st.composite
def forms(draw: Any) -> Dict[str, Any]:
    """A multipart body whose file data holds strings like its delimiters."""
    from werkzeug.sansio import multipart

    boundary = draw(st.sampled_from(BOUNDARIES))
    marker = b"--" + boundary.encode()
    needle = skip_needle(marker)
    lookalikes = st.sampled_from([
        marker[:-1], marker[1:], needle, needle[:-1], b"x" + marker, marker + b"x",
        b"-" + marker + b"-", b"\r\n" + marker[:-1], b"\r\n-" + marker[2:], b"\r\n",
        b"\r", b"\n", b"--", b"\r\n\r\n", needle + needle, b"x" + marker + b"--\r\n",
        # a line break and the marker, but no delimiter: what follows is wrong
        b"\r\n" + marker + b"x", b"\n" + marker + b"-x", b"\r" + marker + b" x\r\n",
    ])
    filler = st.binary(min_size=1, max_size=30)
    fragment = st.tuples(lookalikes | filler, st.integers(min_value=1, max_value=3000))
    line_break = draw(st.sampled_from(LINE_BREAKS))
    # what may follow a delimiter's marker: white space before its line break
    after = st.sampled_from([b"", b"", b" ", b"\t \t"])
    delimiter = multipart.MultipartDecoder(boundary.encode()).boundary_re
    body = b""
    for n in range(draw(st.integers(min_value=0, max_value=5))):
        pieces = draw(st.lists(fragment, max_size=6))
        data = b"".join(piece * count for piece, count in pieces)
        # a part's data never holds its delimiter
        while True:
            found = delimiter.search(data)
            if found is None:
                break
            data = data[:found.start() + 1] + b"\x00" + data[found.start() + 1:]
        if data.startswith(marker):
            data = b"\x00" + data
        head = f'Content-Disposition: form-data; name="f{n}"'
        if draw(st.booleans()):
            head += f'; filename="{n}.bin"'
            if draw(st.booleans()):
                head += f"\r\nContent-Type: type/{n}"
        body += (marker + draw(after) + line_break + head.encode() + line_break * 2 + data +
                 line_break)
    body += marker + b"--" + draw(st.sampled_from([b"", b"\r\n", b"\r\n" + b"e" * 9000]))
    return {"boundary": boundary, "body": body}


cut_sizes = st.lists(st.integers(min_value=1, max_value=80) |
                     st.integers(min_value=SKIP_AT_LEAST - 80, max_value=SKIP_AT_LEAST + 80) |
                     st.integers(min_value=1, max_value=70_000),
                     min_size=1, max_size=10)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(form=forms(), cuts=cut_sizes)
def test_generated_forms_are_listed_as_the_decoder_fed_everything_lists_them(
        form: Dict[str, Any], cuts: List[int]) -> None:
    body = form["body"]
    same_as_reference(body, form["boundary"], reads(len(body), cuts))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=30_000), cuts=cut_sizes, boundary=st.sampled_from(BOUNDARIES))
def test_any_bytes_are_listed_as_the_decoder_fed_everything_lists_them(
        body: bytes, cuts: List[int], boundary: str) -> None:
    same_as_reference(body, boundary, reads(len(body), cuts))


# -- delimiters at every offset of a read ---------------------------------------------------


@pytest.mark.parametrize("boundary", BOUNDARIES[:3] + ["x"])
@pytest.mark.parametrize("line_break", LINE_BREAKS, ids=["crlf", "lf", "cr"])
def test_delimiters_split_at_every_offset_between_large_and_tiny_reads(
        boundary: str, line_break: bytes) -> None:
    marker = b"--" + boundary.encode()
    data = (bytes(range(256)) * 40)[:9000]  # CR and LF in it, like real files
    body = (marker + line_break + b'Content-Disposition: form-data; name="a"; filename="a"' +
            line_break * 2 + data + line_break + marker + line_break +
            b'Content-Disposition: form-data; name="b"; filename="b"' + line_break * 2 +
            data + line_break + marker + b"--" + line_break + b"epilogue" * 1000)
    between = body.index(line_break + marker + line_break)
    closing = body.index(line_break + marker + b"--")
    for delimiter in (between, closing):
        for cut in range(delimiter - len(marker) - 8, delimiter + 2 * len(marker) + 8):
            same_as_reference(body, boundary, [cut, len(body)])
            # a large read, then the cut, one byte (the decoder holds the
            # marker and what follows), then a large read it could skip
            same_as_reference(body, boundary, [cut - SKIP_AT_LEAST, cut, cut + 1, len(body)])


@pytest.mark.parametrize("after", [
    b"--", b"--\r\n",
    b" \t\r\nContent-Disposition: form-data; name=\"b\"; filename=\"b\"\r\n\r\nb\r\n--%s--",
], ids=["closing", "closing-crlf", "blanks"])
def test_a_window_never_ends_inside_what_follows_a_marker(after: bytes) -> None:
    """werkzeug's decoder, given a read that ends after a CRLF delimiter's
    marker and part of what follows it (its ``--``, blanks), counts the CR as
    the part's data; fed the whole body, it does not.  The window read after
    a needle ends wherever its length says, here everywhere around the
    delimiter: one read of the whole body lists what the decoder fed it whole
    lists."""
    boundary = BOUNDARIES[2]
    marker = b"--" + boundary.encode()
    head = marker + b'\r\nContent-Disposition: form-data; name="a"; filename="a"\r\n\r\n'
    after = after.replace(b"%s", boundary.encode())
    for length in range(WINDOW - 100, WINDOW + 20):
        # a needle but no delimiter, then a window's length to the delimiter
        data = b"a" * 5000 + b"x" + skip_needle(marker) + b"y" * length
        body = head + data + b"\r\n" + marker + after
        assert listed(body, boundary, [len(body)])[0]["received"] == len(data)
        same_as_reference(body, boundary, [len(body)])


# -- the bodies the issue names ------------------------------------------------------------

BOUNDARY = BOUNDARIES[0]


def part(name: str, data: bytes, filename: str) -> bytes:
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\n\r\n').encode() + data + b"\r\n"


@pytest.mark.parametrize("cut", [1, 7, 4096, 65536, 1 << 20])
def test_ten_thousand_tiny_parts(cut: int) -> None:
    body = b"".join(part(f"f{n}", b"x", f"{n}.txt") for n in range(10_000))
    body += f"--{BOUNDARY}--\r\n".encode()
    ends = reads(len(body), [cut])
    assert listed(body, BOUNDARY, ends) == reference(body, BOUNDARY, ends)
    assert len(listed(body, BOUNDARY, ends)) == MAX_FILES


@pytest.mark.parametrize("cut", [13, 4096, 1 << 20])
def test_a_broken_boundary(cut: int) -> None:
    body = (part("photo", b"p" * 100_000, "a.jpg").replace(BOUNDARY.encode(), b"other") +
            f"--{BOUNDARY}-\r\n".encode() + b"z" * 100_000)
    ends = reads(len(body), [cut])
    assert listed(body, BOUNDARY, ends) == reference(body, BOUNDARY, ends) == []


@pytest.mark.parametrize("cut", [13, 4096, 1 << 20])
def test_a_part_head_of_1_mb_stops_the_listing_after_the_files_before_it(cut: int) -> None:
    first = part("first", b"f" * 50_000, "first.bin")
    huge = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="big"; filename="a"\r\n'
            f'X-Pad: {"h" * 1_000_000}\r\n\r\ndata\r\n').encode()
    body = first + huge + part("after", b"q" * 100, "after.bin") + \
        f"--{BOUNDARY}--\r\n".encode()
    ends = reads(len(body), [cut])
    expected = reference(body, BOUNDARY, ends)
    assert [f["field_name"] for f in expected] == ["first", "big", "after"]
    # the decoder may hold no more than MAX_BUFFERED bytes of a part's head
    assert listed(body, BOUNDARY, ends) == expected[:1]

