"""A resumable-upload server in its own process, for tests that kill it:

    python resumable_server.py DOOR UPLOADS CALLS [--sync-bytes N] [--fsize N]
                               [--backend URL --lock-ttl S --name HOST]

DOOR is ``server`` (wsgiprogress.server) or ``werkzeug`` (its dev server and
the middleware); uploads are stored in UPLOADS; each application call writes
``CALLS/<upload id>.<n>`` (``.<HOST>`` appended with ``--name``) holding the
body's SHA-256, so calls can be counted across restarts and hosts.
``--sync-bytes`` commits long appends more often; ``--fsize`` caps the size
of any file this process writes (RLIMIT_FSIZE), the way a full disk refuses
bytes; ``--backend`` keeps the records and locks there (Redis: several
"hosts" share UPLOADS).  A request that is not a completed upload is a
plain tracked one: 200 ``plain <bytes read>``.  Prints ``Serving on
http://127.0.0.1:<port>`` on stderr."""
from __future__ import annotations

import argparse
import hashlib
import os
import resource
import signal
import sys
from typing import Any, Dict, Iterable

from wsgiprogress import ProgressMiddleware, keys
from wsgiprogress.resumable import storage


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("door", choices=["server", "werkzeug"])
    parser.add_argument("uploads")
    parser.add_argument("calls")
    parser.add_argument("--sync-bytes", type=int)
    parser.add_argument("--fsize", type=int)
    parser.add_argument("--backend", default="memory://")
    parser.add_argument("--lock-ttl", type=float, default=30.0)
    parser.add_argument("--name")
    options = parser.parse_args()
    if options.sync_bytes:
        storage.SYNC_BYTES = options.sync_bytes
    if options.fsize:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes then fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (options.fsize, options.fsize))

    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        digest = hashlib.sha256()
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
        while remaining:
            chunk = environ["wsgi.input"].read(min(65536, remaining))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
        if keys.UPLOAD not in environ:
            body = f"plain {int(environ.get('CONTENT_LENGTH') or 0) - remaining}".encode()
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        upload_id = environ[keys.UPLOAD]["id"]
        number = sum(1 for name in os.listdir(options.calls) if name.startswith(upload_id))
        host = f".{options.name}" if options.name else ""
        with open(os.path.join(options.calls, f"{upload_id}.{number}{host}"), "w") as f:
            f.write(digest.hexdigest())
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    settings = {"resumable_dir": options.uploads, "backend": options.backend,
                "resumable_lock_ttl": options.lock_ttl}
    if options.door == "server":
        from wsgiprogress.server import create_server
        server = create_server(app, host="127.0.0.1", port=0, **settings)
        print(f"Serving on http://127.0.0.1:{server.effective_port}", file=sys.stderr, flush=True)
        server.run()
    else:
        from werkzeug.serving import make_server
        dev = make_server("127.0.0.1", 0, ProgressMiddleware(app, **settings), threaded=True)
        print(f"Serving on http://127.0.0.1:{dev.server_port}", file=sys.stderr, flush=True)
        dev.serve_forever()


if __name__ == "__main__":
    main()
