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

import statistics
import sys
from typing import Dict, List, Tuple

import bench_support
from bench_requests import served_or_no_wrk, wrk

HOST = "127.0.0.1"
MODULE = "ngx_http_uploadprogress_module.so"
PROBE = """
request = function() return wrk.format("GET", "/progress?X-Progress-ID=bench-probe-0001") end
"""
NGINX = """
  upload_progress proxied 1m;
  server {
    listen {port};
    location ^~ /progress { report_uploads proxied; }
  }
"""


def main(argv: List[str]) -> int:
    if served_or_no_wrk(argv):
        return 0
    rounds, seconds = (3, 2) if "--quick" in argv else (7, 3)
    runs: Dict[Tuple[str, int], List[float]] = {}
    with bench_support.server_process(__file__, "ours") as ours, \
            bench_support.nginx_with_module(MODULE, NGINX) as nginx:
        peer = nginx[0] if nginx else None
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
