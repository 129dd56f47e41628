"""A fault-injecting HTTP proxy on 127.0.0.1, between ckptd and the S3 server.

Each request, before it reaches the server, draws one fault at the configured rates: an
answer ``503 SlowDown`` or ``500 InternalError`` (the server did nothing), a reset
connection, or a delay (then it is forwarded). Everything else is forwarded as it is, with
the ``Host`` header the client signed, so signatures still check out. Counts of each fault
are kept in :attr:`FaultProxy.counts`. It runs on an event loop in a thread of its own and
stops with :meth:`FaultProxy.stop`; the rates can be changed (or set to 0) while it runs.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from typing import Any

import aiohttp
from aiohttp import web

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "content-length"}
ERROR_BODY = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
              "<Message>injected by the test proxy</Message></Error>")


class FaultProxy:
    """Forwards to ``upstream`` (``http://127.0.0.1:PORT``), injecting faults at rates."""

    def __init__(self, upstream: str, *, slowdown: float = 0.0, error: float = 0.0,
                 reset: float = 0.0, delay: float = 0.0, delay_s: float = 2.0,
                 seed: int = 1) -> None:
        self.upstream = upstream.rstrip("/")
        self.rates = {"slowdown": slowdown, "error": error, "reset": reset, "delay": delay}
        self.delay_s = delay_s
        self.counts: Counter[str] = Counter()
        self.port = 0
        self._random = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fault proxy did not start")
        return self

    def stop(self) -> None:
        if self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)

    def _draw(self) -> str | None:
        roll = self._random.random()
        for name, rate in self.rates.items():
            if roll < rate:
                return name
            roll -= rate
        return None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        connector = aiohttp.TCPConnector(limit=256)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        self._ready.set()
        await self._stopped.wait()
        await self._session.close()
        await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        fault = self._draw()
        self.counts["requests"] += 1
        if fault is not None:
            self.counts[fault] += 1
        if fault == "slowdown":
            return web.Response(status=503, text=ERROR_BODY.format(code="SlowDown"),
                                content_type="application/xml")
        if fault == "error":
            return web.Response(status=500, text=ERROR_BODY.format(code="InternalError"),
                                content_type="application/xml")
        if fault == "reset":
            transport: Any = request.transport
            if transport is not None:
                transport.abort()  # a reset connection, no answer at all
            raise ConnectionResetError("injected reset")
        if fault == "delay":
            await asyncio.sleep(self.delay_s)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with self._session.request(request.method, self.upstream + request.path_qs,
                                         headers=headers, data=body,
                                         allow_redirects=False) as answer:
            payload = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
            if request.method == "HEAD" and "Content-Length" in answer.headers:
                # the object's size, which a HEAD answer carries without its body
                out["Content-Length"] = answer.headers["Content-Length"]
                return web.Response(status=answer.status, headers=out)
            return web.Response(status=answer.status, body=payload, headers=out)


def main() -> None:
    """Run a proxy in a process of its own (benchmarks: its CPU is not the client's):
    ``python -m tests.bucket.faultproxy UPSTREAM --delay-ms 20``; prints its endpoint."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("upstream")
    parser.add_argument("--delay-ms", type=float, default=20.0,
                        help="added to every request (0: forward only)")
    args = parser.parse_args()
    proxy = FaultProxy(args.upstream, delay=1.0 if args.delay_ms > 0 else 0.0,
                       delay_s=args.delay_ms / 1000).start()
    print(proxy.endpoint, flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    proxy.stop()


if __name__ == "__main__":
    main()
