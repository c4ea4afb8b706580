"""
Probes per second on 1 and on 16 keep-alive connections, beside nginx's
upload progress module in the same run.

    python3 benchmarks/bench_probes.py [--quick]

wrk (Debian's ``wrk``) drives ``GET /progress?X-Progress-ID=…`` against our
server (memory store: probes are answered on the I/O loop) and, when
Debian's ``nginx-light`` and ``libnginx-mod-http-uploadprogress`` are
installed, against nginx with ``report_uploads``; each in a process of its
own on 127.0.0.1, stopped at the end.  Runs interleave (ours, nginx, ours,
nginx, ...); figures are medians.

Goals: ours with 16 connections >= ours with 1, and >= 0.2x nginx with 16.
Prints figures, ratios and PASS or MISS; always exits 0.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, Iterator, List, Optional, Tuple

import bench_support
from bench_requests import served_or_no_wrk, wrk

HOST = "127.0.0.1"
MODULE = "/usr/lib/nginx/modules/ngx_http_uploadprogress_module.so"
PROBE = """
request = function() return wrk.format("GET", "/progress?X-Progress-ID=bench-probe-0001") end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def nginx_upload_progress() -> Iterator[Optional[int]]:
    """nginx with the upload progress module on a free port, or None."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                      else None)
    if nginx is None or not os.path.exists(MODULE):
        yield None
        return
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as prefix:
        for folder in ("logs", "temp"):
            os.makedirs(os.path.join(prefix, folder))
        with open(os.path.join(prefix, "nginx.conf"), "w") as conf:
            conf.write(f"""
load_module {MODULE};
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/temp;
  upload_progress proxied 1m;
  server {{
    listen {HOST}:{port};
    location ^~ /progress {{ report_uploads proxied; }}
  }}
}}
""")
        process = subprocess.Popen([nginx, "-p", prefix, "-c", f"{prefix}/nginx.conf",
                                    "-g", "daemon off;"], stderr=subprocess.DEVNULL)
        try:
            bench_support.wait_for_port(HOST, port)
            yield port
        finally:
            process.terminate()
            process.wait(10)


def main(argv: List[str]) -> int:
    if served_or_no_wrk(argv):
        return 0
    rounds, seconds = (3, 2) if "--quick" in argv else (7, 3)
    runs: Dict[Tuple[str, int], List[float]] = {}
    with bench_support.server_process(__file__, "ours") as ours, \
            nginx_upload_progress() as peer:
        targets = {"ours": ours, **({"nginx": peer} if peer else {})}
        for port in targets.values():
            wrk(port, PROBE, 1, 0)  # warm up
        for run in range(rounds):
            for connections in (1, 16):
                for name, port in targets.items():
                    runs.setdefault((name, connections), []).append(
                        wrk(port, PROBE, seconds, run, connections=connections))
    median = {key: statistics.median(values) for key, values in runs.items()}
    print(f"probes/s, medians of {rounds} interleaved runs of {seconds} s")
    for (name, connections), value in sorted(median.items()):
        print(f"{name:6} {connections:2} connection(s): {value:8.0f}/s")
    spread = median[("ours", 16)] / median[("ours", 1)]
    print(f"ours, 16 connections / 1 connection: {spread:.2f}  "
          f"[{'PASS' if spread >= 1 else 'MISS'} goal >= 1]")
    if ("nginx", 16) in median:
        peer_ratio = median[("ours", 16)] / median[("nginx", 16)]
        print(f"ours / nginx upload progress module, 16 connections: {peer_ratio:.3f}  "
              f"[{'PASS' if peer_ratio >= 0.2 else 'MISS'} goal >= 0.2]")
    else:
        print("nginx with the upload progress module not installed "
              "(apt-get install nginx-light libnginx-mod-http-uploadprogress): no peer")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
