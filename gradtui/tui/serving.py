"""``gradtui serve``'s web server: textual-serve's, behind a token, its own origin and a tab limit.

textual-serve 1.1.3 alone is an open door: its ``/ws`` starts a process for whoever connects,
from any web page (no ``Origin`` check, no token), lists its static folder, and its page points
the browser at the address it listens on (``ws://0.0.0.0:…`` works from nowhere). Here:

- the page and ``/ws`` answer 403 without the secret token printed at start (``?token=…``, as
  Jupyter does); the page hands the token to its websocket in the path (``/ws/TOKEN``: the
  page's script appends ``?width=…`` to the URL it is given);
- ``/ws`` refuses a browser's ``Origin`` other than the page's own; listening on a loopback
  address, any ``Host`` but a loopback name is refused too (DNS rebinding);
- at most ``max_tabs`` tabs (each one a process that may train) at once, a clear 503 beyond;
- the page's websocket URL is built from the ``Host`` the browser connected with;
- static files without a directory listing; no ``/download`` route (gradtui delivers no files);
- a busy port or an unknown host is a :class:`~gradtui.errors.GradtuiError` (one line, exit 2);
- the shutdown cancels the tabs' handlers, whose own cleanup sends each tab's process
  textual's ``quit`` (it stops a training as ``q`` does) and waits for it: with a tab open,
  textual-serve took 11-23 s to go, waiting for the browsers.

This relies on textual-serve's ``Server`` beyond its documented use (``handle_websocket``,
``on_shutdown``, ``on_startup``, ``_make_app`` replaced, the template ``app_index.html`` and its
variables, the page script's URL handling; written against textual-serve 1.1.3 and aiohttp
3.14). ``tests/test_serve_security.py::test_textual_serve_is_what_serving_py_was_written_for``
and ``tests/test_serve.py::test_a_stopped_server_ends_its_tabs_at_once`` say whether it holds.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import ipaddress
import re
import secrets
import signal
import socket
import sys
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from textual_serve.server import Server

from gradtui.errors import GradtuiError

#: how long a shutdown waits for the tabs' handlers (a tab that quits still closes its
#: websocket, which waits for the browser's answer)
SHUTDOWN_WAIT_S = 10.0

#: tabs at once unless ``--max-tabs`` says otherwise (each may train: ~650 MB, one core)
DEFAULT_MAX_TABS = 2

#: names a browser on this machine reaches a loopback address by
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

_HOST_HEADER = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+))(?::(?P<port>\d{1,5}))?$"
)


def is_loopback(host: str) -> bool:
    """Whether ``--host`` listens on this machine only."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for every address of ``host`` at ``port``, or a one-line error."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise GradtuiError(
            f"unknown host ({reason}); give a name or address of this machine, e.g. 127.0.0.1 or 0.0.0.0",
            key=f"--host {host}",
        ) from None
    sockets: list[socket.socket] = []
    first: OSError | None = None
    seen = set()
    for family, kind, proto, _, address in infos:
        if (family, address) in seen:
            continue
        seen.add((family, address))
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:  # one address busy: the port is taken
                for other in sockets:
                    other.close()
                raise _bind_error(host, port, exc) from None
            first = first or exc
            continue
        sockets.append(sock)
    if not sockets:
        raise _bind_error(host, port, first or OSError(errno.EADDRNOTAVAIL, "no address"))
    return sockets


def _bind_error(host: str, port: int, exc: OSError) -> GradtuiError:
    if exc.errno == errno.EADDRINUSE:
        return GradtuiError(
            f"already in use on {host}; stop what listens there or give another --port", key=f"--port {port}"
        )
    if exc.errno == errno.EACCES:
        return GradtuiError(
            "permission denied (ports below 1024 need privileges); give another --port", key=f"--port {port}"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return GradtuiError(
            "not an address of this machine; give one of its addresses, e.g. 127.0.0.1 or 0.0.0.0",
            key=f"--host {host}",
        )
    return GradtuiError(f"cannot listen there: {exc.strerror or exc}", key=f"--host {host} --port {port}")


class GradtuiServer(Server):
    """A textual-serve ``Server`` behind a token, its own origin and a tab limit.

    Args:
        command: the shell command each tab runs.
        host: the address to listen on.
        port: the port to listen on.
        max_tabs: tabs at once; the next one gets a refusal page.
        token: the secret the page and ``/ws`` ask for; a new random one when ``None``.
    """

    def __init__(
        self,
        command: str,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        max_tabs: int = DEFAULT_MAX_TABS,
        token: str | None = None,
        title: str = "gradtui",
    ) -> None:
        super().__init__(command, host=host, port=port, title=title)
        self.token = token or secrets.token_urlsafe(32)
        self.max_tabs = max_tabs
        self.loopback = is_loopback(host)
        self._handlers: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ addresses

    def urls(self) -> list[str]:
        """The page's URLs, token included: the ones that work from where the server is reached."""
        tail = f":{self.port}/?token={self.token}"
        if self.host in ("0.0.0.0", "::", ""):
            return [f"http://{_url_host(socket.gethostname())}{tail}", f"http://127.0.0.1{tail}"]
        return [f"http://{_url_host(self.host)}{tail}"]

    def _host_refusal(self, request: web.Request) -> str | None:
        found = _HOST_HEADER.match(request.host or "")
        if not found:
            return "not a valid Host header"
        name = (found.group("v6") or found.group("name") or "").lower()
        if self.loopback and name not in LOOPBACK_NAMES:
            return f"this server answers on {', '.join(sorted(LOOPBACK_NAMES))} only"
        return None

    def _token_ok(self, request: web.Request) -> bool:
        given = request.match_info.get("token") or request.query.get("token", "")
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode())

    def _origin_ok(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:  # not a browser (a browser always sends one with a websocket)
            return True
        return origin.lower() == f"{request.scheme}://{request.host}".lower()

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        refusal = self._host_refusal(request)
        if refusal is not None:
            return web.Response(status=403, text=f"gradtui serve: {refusal}\n")
        route = request.match_info.route.name
        if route in ("index", "websocket", "websocket-token") and not self._token_ok(request):
            return web.Response(
                status=403,
                text="gradtui serve: this page needs the token printed when the server started "
                "(open the whole URL: http://HOST:PORT/?token=...)\n",
            )
        if route in ("websocket", "websocket-token") and not self._origin_ok(request):
            return web.Response(
                status=403, text="gradtui serve: a page from another origin may not open a tab\n"
            )
        response = await handler(request)
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if route == "index":
            response.headers["Cache-Control"] = "no-store"
        return response

    def _full(self) -> bool:
        return len(self._handlers) >= self.max_tabs

    def _full_text(self) -> str:
        return (
            f"gradtui serve: {len(self._handlers)} tabs are open already, the most this server "
            f"allows (--max-tabs {self.max_tabs}); close one, then reload this page"
        )

    # ------------------------------------------------------------------ the web app

    async def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(self.templates_path))
        app.add_routes(
            [
                web.get("/", self.handle_index, name="index"),
                web.get("/ws", self.handle_websocket, name="websocket"),
                web.get("/ws/{token}", self.handle_websocket, name="websocket-token"),
                web.static(
                    "/static", self.statics_path, show_index=False, follow_symlinks=False, name="static"
                ),
            ]
        )
        app.on_startup.append(self.on_startup)
        app.on_shutdown.append(self.on_shutdown)
        return app

    async def handle_index(self, request: web.Request) -> web.StreamResponse:  # type: ignore[override]
        """The page, its websocket URL on the host the browser connected with."""
        if self._full():
            page = f"<!DOCTYPE html><html><body><p>{self._full_text()}.</p></body></html>"
            return web.Response(status=503, text=page, content_type="text/html")
        scheme = "wss" if request.secure else "ws"
        try:
            font_size = int(request.query.get("fontsize", "16"))
        except ValueError:
            font_size = 16
        context = {
            "font_size": max(6, min(font_size, 64)),
            "app_websocket_url": f"{scheme}://{request.host}/ws/{self.token}",
            "config": {"static": {"url": "/static/"}},
            "application": {"name": self.title},
        }
        return aiohttp_jinja2.render_template("app_index.html", request, context)

    async def handle_websocket(self, request: web.Request) -> web.StreamResponse:  # type: ignore[override]
        if self._full():
            return web.Response(status=503, text=self._full_text() + "\n")
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            return await super().handle_websocket(request)
        finally:
            self._handlers.discard(task)  # type: ignore[arg-type]

    async def on_startup(self, app: web.Application) -> None:
        urls = self.urls()
        print(f"gradtui serve: open {urls[0]} in a browser", flush=True)
        for url in urls[1:]:
            print(f"  or {url}", flush=True)
        print(f"  (at most {self.max_tabs} tabs at once; Ctrl+C quits)", flush=True)

    async def on_shutdown(self, app: Any) -> None:
        await super().on_shutdown(app)
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=SHUTDOWN_WAIT_S)

    # ------------------------------------------------------------------ running

    def serve(self, debug: bool = False) -> None:
        """Listen (a busy port or unknown host: :class:`GradtuiError`) and serve until Ctrl+C."""
        sockets = bind(self.host, self.port)
        if not self.loopback:
            sys.stderr.write(
                f"gradtui serve: --host {self.host} is reachable from the network: the token in the "
                "URL is all that protects it (keep it secret, or use 127.0.0.1 and ssh -L)\n"
            )
            sys.stderr.flush()
        self.debug = debug
        self.initialize_logging()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.add_signal_handler(signal.SIGINT, self.request_exit)
            loop.add_signal_handler(signal.SIGTERM, self.request_exit)
        except NotImplementedError:  # pragma: no cover - Windows
            pass
        web.run_app(self._make_app(), sock=sockets, handle_signals=False, loop=loop, print=lambda *args: None)
