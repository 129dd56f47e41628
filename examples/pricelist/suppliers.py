"""A simulated supplier: an HTTP server on 127.0.0.1 with real latency and real failures.

    python -m pricelist.suppliers --name acme --port 8101 [--error-rate 0.05]
        [--timeout-rate 0.01] [--latency-ms 5,60]

GET /quote?sku=SKU answers JSON from :mod:`catalog` after 5-60 ms; some requests get a 503
and a few hang for 3 s, as real suppliers do.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from .catalog import quote


def serve(name: str, port: int, error_rate: float, timeout_rate: float,
          latency: tuple[float, float] = (0.005, 0.060)) -> ThreadingHTTPServer:
    """An HTTP server answering /quote?sku=... as supplier ``name`` would."""
    rng = random.Random()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            try:
                self.answer()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (its timeout is shorter than a hang)

        def answer(self) -> None:
            url = urlparse(self.path)
            sku = parse_qs(url.query).get("sku", [""])[0]
            if url.path != "/quote" or not sku:
                self.send_error(404)
                return
            roll = rng.random()
            time.sleep(rng.uniform(*latency))
            if roll < timeout_rate:
                time.sleep(3.0)  # the client's timeout is shorter: this is a timeout
            if roll < timeout_rate + error_rate:
                self.send_error(503, "busy, try again")
                return
            body = json.dumps(quote(name, sku)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description="a simulated supplier")
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--error-rate", type=float, default=0.05)
    parser.add_argument("--timeout-rate", type=float, default=0.01)
    parser.add_argument("--latency-ms", default="5,60", help="MIN,MAX per answer")
    args = parser.parse_args()
    low, high = (float(x) / 1000 for x in args.latency_ms.split(","))
    server = serve(args.name, args.port, args.error_rate, args.timeout_rate, (low, high))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"supplier {args.name} on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()


if __name__ == "__main__":
    main()
