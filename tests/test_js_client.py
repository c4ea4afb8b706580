"""The JS client (wsgiprogress/static/progress.js) under Node (tests/js/harness.js):
it parses what our probe really sends, in every dialect; its IDs come from
crypto only; upload() follows a redirect after the POST as the browser would;
docs/js-client.md covers its whole API."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from wsgiprogress.progress.entry import ProgressEntry
from wsgiprogress.web.dialects import render

HARNESS = Path(__file__).parent / "js" / "harness.js"
CLIENT = Path(__file__).parents[1] / "wsgiprogress" / "static" / "progress.js"


def run(request: Dict[str, Any]) -> Dict[str, Any]:
    """The harness's whole answer to *request*: result or error, and how often
    Math.random was called (the harness's stub throws; it must never be)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed for the JS client tests: apt-get install -y nodejs")
    done = subprocess.run([node, str(HARNESS)], input=json.dumps(request),
                          capture_output=True, text=True, timeout=30, check=True)
    answer: Dict[str, Any] = json.loads(done.stdout)
    assert answer["mathRandomCalls"] == 0, answer
    return answer


def call(name: str, *args: Any, **request: Any) -> Any:
    answer = run(dict(request, call=name, args=args))
    assert "error" not in answer, answer["error"]
    return answer["result"]


def probe_body(dialect: str, entry: Optional[ProgressEntry]) -> str:
    return render(dialect, "json", None, "client-test", entry).decode()


HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize("crypto", [None, "getRandomValues", "randomUUID", "msCrypto"])
def test_ids_are_32_random_hex_digits_from_crypto(crypto: Optional[str]) -> None:
    # None: Node's own globalThis.crypto, which has both
    request = {} if crypto is None else {"crypto": crypto}
    ids = call("makeId", repeat=10_000, **request)
    assert len(set(ids)) == 10_000
    assert all(HEX32.fullmatch(i) for i in ids), [i for i in ids if not HEX32.fullmatch(i)][:3]


def test_without_crypto_there_is_no_id_rather_than_a_guessable_one() -> None:
    answer = run({"call": "makeId", "args": [], "crypto": "none"})
    assert answer["error"]["name"] == "Error"
    message = answer["error"]["message"]
    assert "crypto.getRandomValues" in message and "crypto.randomUUID" in message
    assert "options.id" in message  # and what to do instead
    # upload() makes its ID the same way, unless the page gives one
    scenario: Dict[str, Any] = {"form": "/upload", "probes": [native("done")]}
    assert run({"call": "upload", "args": [scenario], "crypto": "none"})["error"]["message"] \
        == message
    given = "0123456789abcdef0123456789abcdef"
    scenario["options"] = {"id": given}
    assert run({"call": "upload", "args": [scenario], "crypto": "none"})["result"]["id"] == given


def test_the_source_never_calls_math_random() -> None:
    # the harness's stub catches the paths the tests take; this, the others
    code = re.sub(r"/\*.*?\*/|(?<!:)//[^\n]*", "", CLIENT.read_text(), flags=re.DOTALL)
    assert "upload progress bars" not in code and "function makeId()" in code  # only code left
    assert not re.search(r"Math\s*(\.\s*random|\[)", code)


@pytest.mark.parametrize("url, expected", [
    pytest.param("/upload", "/upload?X-Progress-ID=abc", id="plain"),
    pytest.param("/upload?a=1", "/upload?a=1&X-Progress-ID=abc", id="query"),
    pytest.param("/upload?x-progress-id=old&a=1", "/upload?a=1&X-Progress-ID=abc", id="replace"),
    pytest.param("/upload?fooX-Progress-ID=1", "/upload?fooX-Progress-ID=1&X-Progress-ID=abc",
                 id="whole-name-only"),
    pytest.param("/upload?a=1#top", "/upload?a=1&X-Progress-ID=abc#top", id="fragment"),
])
def test_the_id_is_attached_to_urls(url: str, expected: str) -> None:
    assert call("withId", url, "abc") == expected


def test_the_probe_url_follows_the_servers_id_name_and_dialect() -> None:
    assert call("probeUrlFor", "abc", {}) == \
        "/progress?X-Progress-ID=abc&dialect=native&format=json"
    assert call("probeUrlFor", "abc", {"url": "/p?x=1", "idName": "Upload-Key",
                                       "dialect": "nginx"}, "&wait=5") == \
        "/p?x=1&Upload-Key=abc&dialect=nginx&format=json&wait=5"


UPLOADING = ProgressEntry("client-test", "uploading", received=250, size=1000, speed=50.0)
CHUNKED = ProgressEntry("client-test", "uploading", received=250, size=None, speed=50.0)
DONE = ProgressEntry("client-test", "done", received=1000, size=1000, status=200)
FAILED = ProgressEntry("client-test", "error", received=10, size=1000, status=413,
                       reason="too_large")


@pytest.mark.parametrize("dialect", ["native", "lighttpd", "nginx"])
@pytest.mark.parametrize("entry, state, received, size, percent", [
    pytest.param(None, None, 0, None, None, id="unknown"),
    pytest.param(UPLOADING, "uploading", 250, 1000, 25, id="uploading"),
    pytest.param(CHUNKED, "uploading", 250, None, None, id="chunked"),
    pytest.param(DONE, "done", 1000, 1000, 100, id="done"),
    pytest.param(FAILED, "error", None, None, None, id="error"),
])
def test_every_dialect_normalizes_the_same(dialect: str, entry: Optional[ProgressEntry],
                                           state: Optional[str], received: Optional[int],
                                           size: Optional[int], percent: Optional[int]) -> None:
    result = call("normalize", json.loads(probe_body(dialect, entry)))
    if entry is None:
        assert result["state"] == {"nginx": "starting"}.get(dialect, "unknown")
        return
    assert result["state"] == state
    if state == "error":
        assert result["status"] == 413
        return
    if not (dialect == "nginx" and state == "done"):  # nginx says only "done"
        assert (result["received"], result["size"]) == (received, size)
    assert result["percent"] == percent


def test_speed_and_eta_are_computed_when_the_dialect_lacks_them() -> None:
    samples: List[Any] = [
        [0, probe_body("nginx", ProgressEntry("x", "uploading", received=0, size=3000))],
        [1000, probe_body("nginx", ProgressEntry("x", "uploading", received=1000, size=3000))],
        [2000, probe_body("nginx", ProgressEntry("x", "uploading", received=2000, size=3000))],
    ]
    last = call("samples", samples)[-1]
    assert (last["speed"], last["eta"], last["percent"]) == (1000, 1, 66)
    assert last["text"] == "66 % · 1.0 kB/s · 1 s left"


def test_native_speed_and_eta_are_used_as_sent() -> None:
    entry = ProgressEntry("x", "uploading", received=500_000, size=1_000_000, speed=250_000.0)
    only = call("samples", [[0, probe_body("native", entry)]])[0]
    assert (only["speed"], only["eta"]) == (250000, 2)
    assert only["text"] == "50 % · 250.0 kB/s · 2 s left"


# -- upload(): a form that redirects after its POST still navigates -------------

def native(state: str, received: int = 1000, status: Optional[int] = None) -> Dict[str, Any]:
    entry = ProgressEntry("client-test", state, received=received, size=1000, status=status)
    return json.loads(probe_body("native", entry))


def upload(**scenario: Any) -> Dict[str, Any]:
    """upload() in the harness's fake browser, its page at http://app.test/page;
    the probes are polled every millisecond."""
    scenario.setdefault("options", {})
    scenario["options"] = dict({"interval": 1, "bar": True, "text": True}, **scenario["options"])
    result: Dict[str, Any] = call("upload", scenario)
    assert HEX32.fullmatch(result["id"]) or scenario["options"].get("id") == result["id"]
    return result


def posted(job: Dict[str, Any]) -> str:
    (url,) = [url for method, url in job["requests"] if method == "POST"]
    return url


UPLOADING_HALF = native("uploading", received=500)
PAGE = "http://app.test"


def test_a_form_that_redirects_after_its_post_navigates_where_it_led() -> None:
    # Post/Redirect/Get: POST /upload answers 303 See Other, Location /thanks?saved=1;
    # the XHR follows it, so its final URL (responseURL) is /thanks?saved=1
    job = upload(form=f"{PAGE}/upload", probes=[UPLOADING_HALF], uploadAfter=1,
                 upload={"status": 200, "redirectTo": "/thanks?saved=1"})
    assert posted(job) == f"{PAGE}/upload?X-Progress-ID={job['id']}"
    assert job["assigned"] == [f"{PAGE}/thanks?saved=1"]
    # the upload is over once it is answered: done, then away, and no more probes
    assert job["events"] == [["progress", "uploading", None], ["answered", 200],
                             ["done", "done", 100, None], ["assign", f"{PAGE}/thanks?saved=1"]]
    assert sorted(method for method, _ in job["requests"]) == ["GET", "POST"]
    assert (job["bar"]["value"], job["text"]["textContent"]) == (100, "done")


def test_a_redirect_seen_by_the_probe_before_the_answer_arrives() -> None:
    job = upload(form=f"{PAGE}/upload", uploadAfter=3,
                 probes=[UPLOADING_HALF, native("processing", status=303),
                         native("done", status=303)],
                 upload={"redirectTo": f"{PAGE}/list"})
    assert job["events"] == [
        ["progress", "uploading", None], ["progress", "processing", 303],
        ["progress", "done", 303], ["done", "done", 100, 303], ["answered", 200],
        ["assign", f"{PAGE}/list"]]


@pytest.mark.parametrize("upload_after", [1, 2], ids=["answer-first", "probe-first"])
def test_a_redirect_back_to_the_same_url_is_told_by_the_probes_status(upload_after: int) -> None:
    # redirect(request.url): the final URL is the one posted to, X-Progress-ID and
    # all; only the native probe's status (303) tells that the answer redirected
    job = upload(form=f"{PAGE}/upload", uploadAfter=upload_after,
                 probes=[UPLOADING_HALF, native("done", status=303)], upload={})
    same = f"{PAGE}/upload?X-Progress-ID={job['id']}"
    assert job["assigned"] == [same] and job["events"][-1] == ["assign", same]
    assert job["events"].count(["done", "done", 100, 303]) == 1
    assert job["events"].count(["answered", 200]) == 1


@pytest.mark.parametrize("upload_after", [0, 1, 2])
def test_a_json_answer_leaves_the_page_where_it_is(upload_after: int) -> None:
    job = upload(form=f"{PAGE}/upload", uploadAfter=upload_after,
                 probes=[UPLOADING_HALF, native("done", status=200)],
                 upload={"status": 200, "responseText": '{"size": 1000}'})
    assert job["assigned"] == []
    # the probe is followed to its end, as before
    assert job["events"].count(["done", "done", 100, 200]) == 1
    assert job["events"].count(["answered", 200]) == 1
    assert [e for e in job["events"] if e[0] == "progress"][-1] == ["progress", "done", 200]
    assert (job["bar"]["value"], job["text"]["textContent"]) == (100, "done")


def test_follow_false_keeps_the_page_whatever_the_answer() -> None:
    job = upload(form=f"{PAGE}/upload", options={"follow": False}, uploadAfter=1,
                 probes=[UPLOADING_HALF, native("done", status=303)],
                 upload={"redirectTo": "/thanks"})
    assert job["assigned"] == []
    assert job["events"][-1] == ["done", "done", 100, 303]


@pytest.mark.parametrize("follow, assigned", [
    pytest.param(None, [], id="default-off"),
    pytest.param(True, [f"{PAGE}/thanks"], id="follow"),
])
def test_formdata_follows_a_redirect_only_when_asked(follow: Optional[bool],
                                                    assigned: List[str]) -> None:
    options = {"action": "/upload?kind=raw"} if follow is None else \
        {"action": "/upload?kind=raw", "follow": follow}
    job = upload(options=options, uploadAfter=1, probes=[UPLOADING_HALF, native("done")],
                 upload={"redirectTo": "/thanks"})
    assert posted(job) == f"/upload?kind=raw&X-Progress-ID={job['id']}"
    assert job["assigned"] == assigned


def test_a_relative_action_that_did_not_redirect_is_not_followed() -> None:
    # the posted URL is relative, responseURL absolute: the same place
    job = upload(options={"action": "/upload#top", "follow": True}, uploadAfter=1,
                 probes=[UPLOADING_HALF, native("done", status=200)], upload={})
    assert job["assigned"] == [] and job["events"][-1] == ["done", "done", 100, 200]


def test_without_callbacks_a_redirect_still_navigates_and_fills_the_bar() -> None:
    job = upload(form=f"{PAGE}/upload", callbacks=False, uploadAfter=1,
                 probes=[UPLOADING_HALF], upload={"redirectTo": "/thanks"})
    assert job["assigned"] == [f"{PAGE}/thanks"]
    assert (job["bar"]["value"], job["text"]["textContent"]) == (100, "done")


def test_a_network_error_navigates_nowhere() -> None:
    job = upload(form=f"{PAGE}/upload", uploadAfter=1, probes=[UPLOADING_HALF],
                 upload={"error": True})
    assert job["assigned"] == []
    assert job["events"] == [["progress", "uploading", None], ["answered", 0],
                             ["error", "network", None]]


@pytest.mark.parametrize("upload_after", [1, 2], ids=["answer-first", "probe-first"])
def test_the_servers_answer_to_a_cancelled_upload_is_an_error_heard_once(
        upload_after: int) -> None:
    # cancelled by someone else (another page, the application): the page learns
    # it from the upload's own answer, or from the probe, whichever comes first
    job = upload(form=f"{PAGE}/upload", uploadAfter=upload_after,
                 probes=[UPLOADING_HALF, native("error", received=500)],
                 upload={"status": 409, "responseText": "upload cancelled\n"})
    assert job["assigned"] == []
    errors = [e for e in job["events"] if e[0] == "error"]
    assert len(errors) == 1, job["events"]
    if upload_after == 1:  # the answer came first
        assert errors[0][1] == "cancelled", job["events"]
    assert not [e for e in job["events"] if e[0] == "done"]


@pytest.mark.parametrize("cancel_after, probes", [
    pytest.param(2, [UPLOADING_HALF, native("done", status=200)], id="after-the-probe-said-done"),
    pytest.param(1, [UPLOADING_HALF, native("done", status=200)], id="before-the-answer"),
])
def test_a_cancel_too_late_leaves_a_finished_upload_done(
        cancel_after: int, probes: List[Dict[str, Any]]) -> None:
    # the page cancels as the upload ends: the server had answered it 200 and
    # says 404 to the DELETE (nothing of that ID runs), so the upload is done
    job = upload(form=f"{PAGE}/upload", uploadAfter=2, cancelAfter=cancel_after,
                 cancelStatus=404, probes=probes, upload={"status": 200})
    assert ["cancel", False, 404] in job["events"]
    assert not [e for e in job["events"] if e[0] == "error"], job["events"]
    assert job["events"].count(["done", "done", 100, 200]) == 1, job["events"]


@pytest.mark.parametrize("answer", [
    pytest.param({"status": 409, "responseText": "upload cancelled\n"}, id="ours-409"),
    pytest.param({"status": 400, "responseText": "client disconnected"}, id="the-apps-error"),
    pytest.param({"error": True}, id="connection-closed"),
])
def test_the_pages_own_cancel_ends_as_cancelled_once(answer: Dict[str, Any]) -> None:
    job = upload(form=f"{PAGE}/upload", uploadAfter=1, cancelAfter=1,
                 probes=[UPLOADING_HALF, native("error", received=500)], upload=answer)
    errors = [e for e in job["events"] if e[0] == "error"]
    assert errors == [["error", "cancelled", None]], job["events"]
    assert not [e for e in job["events"] if e[0] == "done"]


@pytest.mark.parametrize("status, ok, heard", [
    pytest.param(202, True, ["error", "cancelled", None], id="sent-to-another-process"),
    pytest.param(403, False, ["error", None, 500], id="refused"),
    pytest.param(404, False, ["error", None, 500], id="not-running"),
])
def test_only_an_accepted_cancel_makes_a_failed_upload_cancelled(
        status: int, ok: bool, heard: List[Any]) -> None:
    # the upload fails (500) before the DELETE is answered: what the page
    # hears waits for that answer; a refused cancel stopped nothing
    job = upload(form=f"{PAGE}/upload", uploadAfter=1, cancelAfter=1, cancelStatus=status,
                 probes=[UPLOADING_HALF, native("error", status=500)],
                 upload={"status": 500, "responseText": "boom"})
    assert ["cancel", ok, status] in job["events"]
    errors = [e for e in job["events"] if e[0] == "error"]
    assert errors == [heard], job["events"]


def test_an_applications_own_409_is_not_taken_for_a_cancel() -> None:
    job = upload(form=f"{PAGE}/upload", uploadAfter=1,
                 probes=[UPLOADING_HALF, native("done", status=409)],
                 upload={"status": 409, "responseText": '{"error": "exists"}'})
    assert ["error", "cancelled", None] not in job["events"]
    assert job["events"][-1] == ["done", "done", 100, 409]


UNKNOWN = json.loads(probe_body("native", None))


@pytest.mark.parametrize("status, ending", [
    pytest.param(200, ["done", "done", 100, 200], id="saved"),
    pytest.param(413, ["error", "unknown", 413], id="refused-by-a-proxy"),
])
def test_an_upload_the_probe_never_saw_ends_with_its_answer(status: int,
                                                           ending: List[Any]) -> None:
    # untracked (a buffering proxy in front, a full store): the probe says
    # "unknown" throughout; once the upload is answered it never will know it,
    # so the answer ends it, its status kept, instead of maxUnknown answers later
    job = upload(form=f"{PAGE}/upload", uploadAfter=1, probes=[UNKNOWN],
                 upload={"status": status, "responseText": "ok"})
    ends = [e for e in job["events"] if e[0] in ("done", "error")]
    assert ends == [ending], job["events"]
    assert job["events"].index(["answered", status]) < job["events"].index(ending)
    assert job["assigned"] == []


def test_an_upload_nginx_never_saw_ends_with_its_answer() -> None:
    # nginx's dialect has no "unknown": it says "starting" for an ID it does not know
    starting = json.loads(probe_body("nginx", None))
    assert starting == {"state": "starting"}
    job = upload(form=f"{PAGE}/upload", options={"dialect": "nginx"}, uploadAfter=1,
                 probes=[starting], upload={"status": 200, "responseText": "ok"})
    assert [e for e in job["events"] if e[0] in ("done", "error")] == \
        [["done", "done", 100, 200]], job["events"][-3:]


def test_an_unseen_upload_longer_than_max_unknown_still_ends_with_its_answer() -> None:
    # maxUnknown (20) "unknown" answers come while the upload is still being
    # sent: only its answer can tell how it ended, so the page waits for it
    job = upload(form=f"{PAGE}/upload", uploadAfter=45, probes=[UNKNOWN],
                 upload={"status": 200, "responseText": "ok"})
    ends = [e for e in job["events"] if e[0] in ("done", "error")]
    assert ends == [["done", "done", 100, 200]], job["events"]
    assert job["events"].count(["progress", "unknown", None]) >= 45  # followed throughout


def test_a_probe_url_that_answers_a_page_ends_as_a_network_error() -> None:
    # a wrong url: the application's HTML page, 200, at every poll; not JSON is
    # a failed poll, maxErrors of them in a row end it (upload(): its answer
    # does, test_an_upload_whose_probe_keeps_failing_ends_with_its_own_answer)
    job = track(probes=[UNKNOWN], probeText="<!doctype html><title>Home</title>")
    assert job["events"] == [["error", "network", None]]
    assert [m for m, _ in job["requests"]].count("GET") == 5  # maxErrors


def test_a_page_whose_on_progress_throws_still_follows_its_upload() -> None:
    # the page's own error is thrown out (the console shows it), not taken
    # for a failed poll: the upload is followed to its end
    job = upload(form=f"{PAGE}/upload", uploadAfter=3, throwing=True,
                 probes=[UPLOADING_HALF] * 3 + [native("done", status=200)],
                 upload={"status": 200})
    assert [e for e in job["events"] if e[0] in ("done", "error")] == \
        [["done", "done", 100, 200]], job["events"]
    assert job["uncaught"] >= 4


# -- the probe's own HTTP errors: a refusal is final, the rest is retried -------

def answer(status: int, **headers: str) -> Dict[str, Any]:
    """A probe answer of *status* that is not the probe's JSON (see the harness)."""
    return {"http": status, "headers": headers, "text": "refused\n"}


def track(**scenario: Any) -> Dict[str, Any]:
    """track() alone in the harness's fake browser, polled every millisecond."""
    scenario["options"] = dict({"interval": 1, "id": "client-test-track-0001"},
                               **scenario.get("options", {}))
    result: Dict[str, Any] = call("track", scenario)
    return result


def gets(job: Dict[str, Any]) -> int:
    return [method for method, _ in job["requests"]].count("GET")


@pytest.mark.parametrize("status", [403, 400, 404, 405, 401])
def test_a_probe_that_refuses_ends_track_at_once_with_its_status(status: int) -> None:
    # 403: the authorize hook says no; 400: a malformed ID; 404, 405: a wrong
    # url. Asking again gives the same answer: no retries, and not "network"
    job = track(probes=[UPLOADING_HALF, answer(status)])
    assert job["events"] == [["progress", "uploading", None], ["error", "refused", status]]
    assert gets(job) == 2


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_a_probe_that_may_answer_later_is_asked_again(status: int) -> None:
    # a restarting server, a proxy's timeout, too many requests: polling goes on
    job = track(probes=[answer(status), answer(status), native("done", status=200)])
    assert job["events"] == [["progress", "done", 200], ["done", "done", 100, 200]]
    assert gets(job) == 3
    # maxErrors of them in a row end it as before, with the last status heard
    job = track(probes=[answer(status)])
    assert job["events"] == [["error", "network", status]] and gets(job) == 5


@pytest.mark.parametrize("status, retry_after, at_least", [
    pytest.param(503, "1", 1000, id="503-seconds"),
    pytest.param(429, "1", 1000, id="429-seconds"),
    pytest.param(503, "date+2", 900, id="503-http-date"),
    pytest.param(503, "soon", 0, id="unreadable"),
    pytest.param(500, "1", 0, id="not-for-500"),
])
def test_retry_after_is_honoured_for_429_and_503(status: int, retry_after: str,
                                                 at_least: int) -> None:
    if retry_after == "date+2":  # an HTTP date, whole seconds: 1 to 2 s ahead
        retry_after = formatdate(time.time() + 2, usegmt=True)
    job = track(probes=[answer(status, **{"Retry-After": retry_after}), native("done")])
    assert job["events"][-1][0] == "done", job["events"]
    first, second = job["sentAt"]
    assert at_least <= second - first < at_least + 1000, job["sentAt"]


@pytest.mark.parametrize("probes", [
    pytest.param([answer(403)], id="never-seen"),
    pytest.param([UPLOADING_HALF, UPLOADING_HALF, answer(403)], id="seen-then-refused"),
])
@pytest.mark.parametrize("status, ending", [
    pytest.param(200, ["done", "done", 100, 200], id="saved"),
    pytest.param(413, ["error", "unknown", 413], id="refused-by-the-app"),
])
def test_an_upload_whose_probe_refuses_ends_with_its_own_answer(
        probes: List[Dict[str, Any]], status: int, ending: List[Any]) -> None:
    # the probe refuses while the upload is still being sent (300 ms): polling
    # stops, and the upload's answer, not the probe, says how it ended
    job = upload(form=f"{PAGE}/upload", uploadAfterMs=300, probes=probes,
                 upload={"status": status, "responseText": "ok"})
    ends = [e for e in job["events"] if e[0] in ("done", "error")]
    assert ends == [ending], job["events"]
    assert job["events"].index(["answered", status]) < job["events"].index(ending)
    assert gets(job) == len(probes)


@pytest.mark.parametrize("status, ending", [
    pytest.param(200, ["done", "done", 100, 200], id="saved"),
    pytest.param(413, ["error", "unknown", 413], id="refused-by-the-app"),
])
def test_an_upload_whose_probe_keeps_failing_ends_with_its_own_answer(
        status: int, ending: List[Any]) -> None:
    # the probe answers 503 (a store down, a restarting backend) maxErrors
    # times while the upload is still being sent (300 ms): progress is lost,
    # not the upload; its answer, not "network", says how it ended
    job = upload(form=f"{PAGE}/upload", uploadAfterMs=300,
                 probes=[UPLOADING_HALF, answer(503)],
                 upload={"status": status, "responseText": "ok"})
    ends = [e for e in job["events"] if e[0] in ("done", "error")]
    assert ends == [ending], job["events"]
    assert job["events"].index(["answered", status]) < job["events"].index(ending)
    assert gets(job) == 1 + 5  # maxErrors failed polls, then none


def test_a_probe_that_refuses_after_the_answer_ends_the_upload_with_it() -> None:
    # answered while the probe said "uploading" (its "done" not yet polled),
    # then the probe refuses: the answer ends it at once
    job = upload(form=f"{PAGE}/upload", uploadAfter=1,
                 probes=[UPLOADING_HALF, UPLOADING_HALF, answer(403)], upload={"status": 201})
    assert job["events"][-2:] == [["progress", "uploading", None], ["done", "done", 100, 201]]
    assert gets(job) == 3


def test_the_page_may_give_the_id() -> None:
    given = "0123456789abcdef0123456789abcdef"
    job = upload(form="/upload", options={"id": given}, probes=[native("done")], upload={})
    assert job["id"] == given
    assert posted(job) == f"/upload?X-Progress-ID={given}"
    assert job["requests"][0][1].startswith(
        f"/progress?X-Progress-ID={given}&dialect=native&format=json&_=")


# -- docs/js-client.md stays the reference -------------------------------------

def test_the_reference_covers_every_function_and_option() -> None:
    source = CLIENT.read_text()
    reference = (CLIENT.parents[2] / "docs" / "js-client.md").read_text()
    exported = re.search(r"var api = \{(.*?)\};", source, re.DOTALL)
    assert exported is not None
    functions = set(re.findall(r"(\w+):", exported.group(1)))
    options = set(re.findall(r"options\.(\w+)", source))
    assert len(functions) == 10 and len(options) == 16, (functions, options)
    rows = set(re.findall(r"^\| `(\w+)[`(]", reference, re.MULTILINE))
    assert functions - rows == set() and options - rows == set()
