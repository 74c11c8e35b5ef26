"""A webhook receiver for the alert tests, run as its own process on 127.0.0.1.

Every request is appended to --log as one JSON line (arrival time, method,
path, headers, body, the status answered). --fail-first N answers the first N
requests with --fail-status; --sleep S waits S seconds before answering.
The chosen port is written to --ready.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--fail-status", type=int, default=503)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--status", type=int, default=200)
    args = ap.parse_args()
    lock = threading.Lock()
    seen = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            t = time.time()
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                seen[0] += 1
                n = seen[0]
            status = args.fail_status if n <= args.fail_first else args.status
            if args.sleep:
                time.sleep(args.sleep)
            rec = {"n": n, "t": t, "method": self.command, "path": self.path, "headers": dict(self.headers),
                   "body": body.decode("utf-8"), "status": status}
            with lock, open(args.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
            try:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the client gave up (timeout)

        def log_message(self, format: str, *a: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    tmp = args.ready + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.replace(tmp, args.ready)
    srv.serve_forever()


if __name__ == "__main__":
    main()
