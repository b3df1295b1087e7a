"""The live view: ``edgekit run --serve [HOST:]PORT``, for a device without a screen.

A small HTTP server beside the loop serves, and nothing else (no path reads a file):

- ``/``              a page: the annotated video; backend, artifact, device; FPS, frames
                     dropped, per-stage p50/p90 with a live chart; the latest detections
- ``/stream.mjpg``   the annotated frames, ``multipart/x-mixed-replace`` JPEG (browsers, VLC,
                     ffmpeg, OpenCV and so ``edgekit run --source URL`` read it)
- ``/snapshot.jpg``  the newest annotated frame
- ``/stats.json``    the figures of ``edgekit run --json``, live
- ``/metrics``       Prometheus' text format, series ``edgekit_*``

It runs on a Pi next to the model, so it stays light: the loop's sink stage hands over a
frame only while a viewer waits for one, and each frame is encoded once whatever the number of
viewers (live.py). The server is the standard library's threading HTTP server: one thread per
connection, which a handful of viewers needs, no dependency to install on a device; a thread
blocked on a stalled viewer holds no lock and no frame.

Safety: the default bind is 127.0.0.1. Whether a bind is loopback is decided once, on the
address the name resolves to; a loopback view answers only requests whose Host header names
loopback or the very name it was started with (``--serve $(hostname):8080`` where that name
resolves to 127.0.1.1: the URL it prints works), which stops DNS rebinding. A bind beyond
loopback needs a token; with one,
every path answers 401 without it. The token comes as ``?token=`` (the page then keeps it in
an HttpOnly cookie and drops it from the address bar), the cookie, or ``Authorization:
Bearer``; it is compared in constant time and never logged (the server logs nothing).
"""
from __future__ import annotations

import errno
import hashlib
import hmac
import ipaddress
import json
import re
import socket
import socketserver
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edgekit.errors import EdgekitError, UsageError
from edgekit.helpers.records import keyword_only
from edgekit.live import page
from edgekit.live.prometheus import CONTENT_TYPE, prometheus_text
from edgekit.live.state import JPEG_QUALITY, STREAM_FPS, LiveState

DEFAULT_HOST = "127.0.0.1"
TOKEN_ENV = "EDGEKIT_SERVE_TOKEN"  # where the deployed service's token comes from
TOKEN_MIN_LENGTH = 16
COOKIE = "edgekit_token"
SEND_TIMEOUT_S = 20.0  # a viewer that takes no data for this long is dropped
# The kernel's send buffer of a stream connection: small, so that what a slow viewer has not
# taken yet is a frame or two (Linux grows it to megabytes on its own), and large enough for
# 30 frames a second over a link with a 50 ms round trip.
STREAM_SNDBUF = 128 * 1024
BOUNDARY = b"edgekit-frame"
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9._~-]+$")
_ADDRESS = re.compile(r"^(?:(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\[\]\s]+):)?(?P<port>\d{1,5})$")
MAKE_TOKEN = "python3 -c 'import secrets; print(secrets.token_urlsafe(24))'"


@keyword_only
@dataclass(frozen=True)
class ServeOptions:
    """Where the live view listens and who may see it."""

    host: str = DEFAULT_HOST
    port: int = 8080
    token: str | None = None
    family: int = socket.AF_INET
    address: tuple = (DEFAULT_HOST, 8080)  # the resolved address bound
    loopback: bool = True
    max_fps: float = STREAM_FPS
    quality: int = JPEG_QUALITY


def parse_address(text: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); UsageError if malformed."""
    match = _ADDRESS.match(text.strip())
    if not match or int(match["port"]) > 65535:
        raise UsageError(f"serve {text!r}: give PORT or HOST:PORT, e.g. 8080 (this machine "
                         "only) or 0.0.0.0:8080 (every interface, with a token)", param="serve")
    host = (match["host"] or DEFAULT_HOST).strip("[]")
    return host, int(match["port"])


def check_token(token: str) -> None:
    """A token long enough to guess at no one's leisure, and safe in a URL and a cookie."""
    if len(token) < TOKEN_MIN_LENGTH or not _TOKEN_CHARS.match(token):
        raise UsageError(f"the live view's token must be at least {TOKEN_MIN_LENGTH} letters, "
                         f"digits, '-', '_', '.' or '~'; make one with {MAKE_TOKEN}")


def serve_options(text: str, token: str | None = None) -> ServeOptions:
    """Parse ``--serve`` and check it against the token rules (UsageError, before any bind)."""
    host, port = parse_address(text)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV)
    except socket.gaierror as exc:
        raise UsageError(f"serve {text}: {host!r} is neither an address nor a name this "
                         f"machine resolves ({exc.strerror})", param="serve") from None
    family, _, _, _, address = found[0]
    loopback = ipaddress.ip_address(address[0].split("%")[0]).is_loopback
    if token is not None:
        check_token(token)
    elif not loopback:
        raise UsageError(f"serve {text} can be reached from other machines, so it needs a "
                         f"token: set {TOKEN_ENV} (make one with "
                         f"{MAKE_TOKEN}), or serve on 127.0.0.1 and reach it through "
                         f"ssh -L {port}:127.0.0.1:{port}", param="serve")
    return ServeOptions(host=host, port=port, token=token, family=family, address=address,
                        loopback=loopback)


class LiveView(LiveState):
    """The HTTP server, bound at construction (errors say why in one line), around the state
    the loop writes."""

    def __init__(self, options: ServeOptions) -> None:
        super().__init__(options.max_fps, options.quality)
        self.options = options
        self._server = _bind(options, self)
        self.port = self._server.server_address[1]
        self._threads = [
            threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                             name="edgekit-serve", daemon=True),
            threading.Thread(target=self.frames.encode_forever, name="edgekit-encode",
                             daemon=True)]
        for thread in self._threads:
            thread.start()

    @property
    def url(self) -> str:
        """The page's address (without the token)."""
        host = self.options.host
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def close(self) -> None:
        """Stop serving: viewers' connections are closed, the threads end."""
        self.frames.close()
        self._server.shutdown()
        for conn in list(self._server.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes a viewer blocked in a send
            except OSError:
                pass
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=2)

    def __enter__(self) -> LiveView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 32

    def __init__(self, options: ServeOptions, view: LiveView) -> None:
        self.address_family = options.family
        self.view = view
        self.connections: set[socket.socket] = set()
        super().__init__(options.address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's name (a DNS query on some networks): skip
        # it, as nothing here uses it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]


def _bind(options: ServeOptions, view: LiveView) -> _Server:
    where = f"--serve {options.host}:{options.port}"
    try:
        return _Server(options, view)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise EdgekitError(f"{where}: the port is in use (`ss -ltnp 'sport = :"
                               f"{options.port}'` shows by what): choose another port, or 0 for "
                               "any free one") from None
        if exc.errno == errno.EACCES and options.port < 1024:
            raise UsageError(f"{where}: ports below 1024 need root or the "
                             "CAP_NET_BIND_SERVICE capability: use a port from 1024 up, such "
                             "as 8080") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise UsageError(f"{where}: {options.host} is not an address of this machine: "
                             "use one of its addresses, 0.0.0.0 for all of them, or "
                             "127.0.0.1") from None
        raise EdgekitError(f"{where}: cannot listen there ({exc.strerror or exc})") from None


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def _names_this_machine(host_header: str | None, served: str = DEFAULT_HOST) -> bool:
    """Whether a Host header names loopback, or ``served``: the name the view was started
    with, which resolved to a loopback address (a page from elsewhere rebinding a name of its
    own does not)."""
    if not host_header:
        return True
    host = host_header.strip().lower()
    host = host.rsplit(":", 1)[0] if not host.endswith("]") and host.count(":") == 1 else host
    host = host[: host.index("]") + 1] if host.startswith("[") and "]" in host else host
    host = host.rstrip(".")
    if host in _LOOPBACK_NAMES or host.endswith(".localhost") or \
            host.strip("[]") == served.lower().rstrip(".").strip("[]"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    def version_string(self) -> str:
        return "edgekit"
    timeout = SEND_TIMEOUT_S  # applies to every read and send on the connection
    protocol_version = "HTTP/1.0"  # one response per connection: nothing idles in a thread

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass  # nothing is logged: a request line can carry the token

    head_only = False  # a HEAD request: the same status and headers as GET, no body

    def do_GET(self) -> None:
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            self.close_connection = True  # the viewer left, or stopped taking data

    def do_HEAD(self) -> None:
        self.head_only = True
        self.do_GET()

    def _route(self) -> None:
        view = self.server.view
        url = urlsplit(self.path)
        token = view.options.token
        if token is None:
            if not _names_this_machine(self.headers.get("Host"), view.options.host):
                return self._text(403, "this live view answers only to this machine's "
                                       "loopback names (localhost, 127.0.0.1)\n")
        else:
            given = parse_qs(url.query).get("token", [None])[0]
            if not self._authorized(token, given):
                return self._unauthorized()
            if given is not None and url.path == "/":  # once: the browser keeps a cookie
                return self._send(303, b"", "text/plain", {
                    "Location": "/",
                    "Set-Cookie": f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"})
        handler = self.ROUTES.get(url.path)
        if handler is None:
            return self._text(404, "not here: try / (the page), /stream.mjpg, /snapshot.jpg, "
                                   "/stats.json or /metrics\n")
        handler(self)

    def _authorized(self, token: str, given: str | None) -> bool:
        offered = [given] if given is not None else []
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            offered.append(auth[7:].strip())
        for part in self.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                offered.append(value)
        expected = _digest(token)
        return any(hmac.compare_digest(_digest(o), expected) for o in offered)

    def _unauthorized(self) -> None:
        self._text(401, "this live view needs its token: open /?token=TOKEN once (the browser "
                        "keeps it), or send Authorization: Bearer TOKEN\n",
                   {"WWW-Authenticate": 'Bearer realm="edgekit"'})

    def _send(self, code: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self._common_headers(headers)
        if not self.head_only:
            self.wfile.write(body)

    def _common_headers(self, headers: dict[str, str] | None = None) -> None:
        for name, value in {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                            "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
                            **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()

    def _text(self, code: int, text: str, headers: dict[str, str] | None = None) -> None:
        self._send(code, text.encode(), "text/plain; charset=utf-8", headers)

    def page(self) -> None:
        self._send(200, page.HTML.encode(), "text/html; charset=utf-8",
                   {"Content-Security-Policy": page.CSP})

    def script(self) -> None:
        self._send(200, page.SCRIPT.encode(), "text/javascript; charset=utf-8")

    def style(self) -> None:
        self._send(200, page.STYLE.encode(), "text/css; charset=utf-8")

    def icon(self) -> None:
        self._send(200, page.ICON.encode(), "image/svg+xml")

    def stats(self) -> None:
        body = json.dumps(self.server.view.stats(), indent=1).encode()
        self._send(200, body, "application/json")

    def metrics(self) -> None:
        self._send(200, prometheus_text(self.server.view).encode(), CONTENT_TYPE)

    def snapshot(self) -> None:
        newest = self.server.view.frames.latest(timeout=2.0)
        if newest is None:
            return self._text(503, "no frame yet: the loop has not finished one\n",
                              {"Retry-After": "1"})
        self._send(200, newest.jpeg, "image/jpeg", {"X-Edgekit-Frame": str(newest.frame)})

    def stream(self) -> None:
        view = self.server.view
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
        self.send_response(200)
        self.send_header("Content-Type",
                         f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
        self.send_header("Connection", "close")
        self._common_headers()
        if self.head_only:
            return
        view.joined(1)
        try:
            seq = 0
            while not view.frames.closed:
                got = view.frames.wait(seq, timeout=1.0)
                if got is None:
                    continue
                seq, started = got.seq, time.thread_time_ns()
                head = (b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n"
                        b"X-Edgekit-Frame: %d\r\n\r\n" % (BOUNDARY, len(got.jpeg), got.frame))
                self.wfile.write(b"".join((head, got.jpeg, b"\r\n")))
                view.sent(time.thread_time_ns() - started)
        finally:
            view.joined(-1)

    ROUTES = {"/": page, "/app.js": script, "/app.css": style, "/favicon.svg": icon,
              "/stats.json": stats,
              "/metrics": metrics, "/snapshot.jpg": snapshot, "/stream.mjpg": stream}
