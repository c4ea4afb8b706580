"""The project's own JS client in resumable mode (wsgiprogress/static/resumable.js)
under Node, with Node's fetch and Blob, through a proxy that drops the network
mid-upload: it resumes from the server's offset through the IETF draft or tus,
on both front doors, and the application gets the file once, byte-exact."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict

import pytest

from resumable_support import CuttingProxy, Recorder, counter, serving, sha256

HARNESS = Path(__file__).parent / "js" / "resumable.js"


def run_node(job: Dict[str, Any]) -> Dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed for the JS client tests: apt-get install -y nodejs")
    done = subprocess.run([node, str(HARNESS)], input=json.dumps(job), capture_output=True,
                          text=True, timeout=60, check=True)
    answer: Dict[str, Any] = json.loads(done.stdout)
    return answer


@pytest.mark.parametrize("door", ["server", "werkzeug"])
@pytest.mark.parametrize("protocol", ["ietf", "tus"])
def test_the_js_client_resumes_after_network_drops(door: str, protocol: str,
                                                   tmp_path: Path) -> None:
    app = Recorder()
    size = 3_000_000
    with serving(door, app, resumable_dir=str(tmp_path)) as port, \
            CuttingProxy(port, cuts=2, after=700_000) as proxy:
        answer = run_node({"size": size, "options": {
            "protocol": protocol, "chunkSize": 1_000_000, "retryDelays": [0, 50, 100, 200],
            "action": f"http://127.0.0.1:{proxy.port}/upload",
            "endpoint": f"http://127.0.0.1:{proxy.port}/files/"}})
    assert "error" not in answer, answer
    # two drops, each resumed from the offset the server reported
    assert len(answer["retries"]) == 2 and answer["retries"] == sorted(answer["retries"])
    assert len(app.calls) == 1
    call = app.calls[0]
    assert (call.size, call.body_sha256) == (size, sha256(counter(size)))
    assert call.query == f"X-Progress-ID={answer['id']}"
    assert answer["result"]["status"] == 201
    assert json.loads(answer["result"]["body"]) == {"call": 1, "size": size}
    if protocol == "ietf":
        assert (call.method, call.path) == ("POST", "/upload")
    else:
        assert (call.method, call.path) == ("POST", "/files/")
