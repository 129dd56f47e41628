"""What every request to the console passes before a page sees it.

- A URL longer than :attr:`Limits.url` gets 414, nothing more.
- The ``Host`` header must name this console: a loopback name (``localhost``, ``127.0.0.1``,
  ``::1``), the address it is bound to, or one of ``console_hosts``; anything else gets 421.
  A web page the operator opens cannot then read the console through DNS rebinding: its
  requests carry the attacker's host name.
- A request that says where it comes from (``Origin``, ``Sec-Fetch-Site``) must come from
  the console itself to change anything (403 otherwise); forms carry a CSRF token too
  (checked where the actions are).
- Only GET, HEAD and POST are served (405).
- Every answer carries headers that forbid framing, sniffing, caching and any script but
  the console's own; a bug answers 500 and is logged, never shown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler as Handler
from aiohttp.typedefs import Middleware

from ckptd.daemon.telemetry.web_server import Limits

log = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD"})
METHODS = SAFE_METHODS | {"POST"}

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; "
                               "style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make forms say Origin: null
    "Cache-Control": "no-store",
}




def host_name(value: str) -> str:
    """The host of a ``Host`` header or of an origin's netloc, lower case, without port or
    brackets (``[::1]:9464`` -> ``::1``)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def allowed_hosts(bind: str, configured: tuple[str, ...]) -> frozenset[str]:
    """The host names this console answers to."""
    names = set(LOOPBACK_NAMES) | {host_name(n) for n in configured}
    if bind not in ("0.0.0.0", "::", ""):
        names.add(host_name(bind if ":" not in bind else f"[{bind}]"))
    return frozenset(names)


def text_response(status: int, text: str) -> web.Response:
    """A short plain-text answer."""
    return web.Response(status=status, text=text + "\n", content_type="text/plain")


def make_guard(hosts: Callable[[], frozenset[str]], limits: Limits,
               count: Callable[[str, str], None]) -> Middleware:
    """The middleware that applies the rules above; ``count(method, code)`` counts answers."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = _refusal(request, hosts(), limits)
        if response is None:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = exc
            except Exception:  # a bug answers 500 and is logged, never shown to the client
                log.exception("the HTTP request %s %s failed", request.method,
                              request.path[:200])
                response = text_response(500, "internal error; see the daemon's log")
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        count(request.method if request.method in METHODS else "other",
              str(response.status))
        log.debug("http request", extra={"fields": {
            "method": request.method, "path": request.path[:200],
            "code": response.status, "client": request.remote}})
        return response

    return guard


def _refusal(request: web.Request, hosts: frozenset[str], limits: Limits
             ) -> web.StreamResponse | None:
    if len(request.raw_path) > limits.url:
        return text_response(414, f"URL too long (over {limits.url} bytes)")
    host = host_name(request.headers.get("Host", ""))
    if host not in hosts:
        return text_response(421, f"this console does not answer to host {host[:100]!r}; "
                                  "add it to console_hosts if it is yours")
    if request.method not in METHODS:
        return web.Response(status=405, text="only GET, HEAD and POST\n",
                            headers={"Allow": "GET, HEAD, POST"})
    if request.method not in SAFE_METHODS and not same_origin(request, hosts):
        return text_response(403, "refused: this request comes from another site")
    return None


def same_origin(request: web.Request, hosts: frozenset[str]) -> bool:
    """False when the browser says the request comes from another site."""
    origin = request.headers.get("Origin")
    if origin is not None:  # scheme, host and port: the console's own, exactly
        netloc = urlsplit(origin).netloc.lower()
        if origin == "null" or netloc != request.headers.get("Host", "").strip().lower() \
                or host_name(netloc) not in hosts:
            return False
    site = request.headers.get("Sec-Fetch-Site")
    return site is None or site in ("same-origin", "none")
