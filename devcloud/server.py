"""The HTTP(S) servers: stdlib ThreadingHTTPServer, TLS per connection, HTTP/1.1 keep-alive."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from .app import DevCloudApp
from .timefmt import TICKS_PER_SECOND
from .web import Request, Response

MAX_BODY = 10 * 1024 * 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "devcloud"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    wbufsize = 0

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        pass

    def _dispatch(self) -> None:
        app: DevCloudApp = self.server.app  # type: ignore[attr-defined]
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = self._read_chunked()
            if body is None:
                self.send_error(413)
                return
        else:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.send_error(413)
                return
            body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        host = self.headers.get("Host") or f"{app.host}:{self.server.server_address[1]}"
        req = Request(
            method=self.command,
            path=parts.path,
            raw_query=parts.query,
            headers=self.headers,
            body=body,
            scheme=self.server.scheme,  # type: ignore[attr-defined]
            host=host,
        )
        try:
            resp = app.handle(req)
        except Exception:  # noqa: BLE001 - a bug must answer 500, not kill the connection
            import traceback

            traceback.print_exc()
            resp = Response(
                500,
                b'{"error":{"code":"InternalServerError","message":"devcloud bug"}}',
                [("Content-Type", "application/json; charset=utf-8")],
            )
        self._send(resp, app)

    def _read_chunked(self) -> bytes | None:
        chunks, total = [], 0
        while True:
            size = int(self.rfile.readline(100).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1000).strip():  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(10)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def _send(self, resp: Response, app: DevCloudApp) -> None:
        if resp.action == "reset":
            self._abort()
            return
        if resp.action == "hang":
            app.stopping.wait(resp.hang_s)
            self._abort()
            return
        head = [f"HTTP/1.1 {resp.status} {self.responses.get(resp.status, ('',))[0]}"]
        head.append(f"Date: {formatdate(app.store.clock_ticks() / TICKS_PER_SECOND, usegmt=True)}")
        head.append("Server: devcloud")
        head.extend(f"{k}: {v}" for k, v in resp.headers)
        head.append(f"Content-Length: {len(resp.body)}")
        if self.close_connection:
            head.append("Connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if resp.action == "truncate":
            self.wfile.write(data + resp.body[: len(resp.body) // 2])
            self.close_connection = True
            self.connection.close()
            return
        if len(resp.body) < 16384:
            self.wfile.write(data + resp.body)
        else:
            # Big bodies go out as they are: no copy to glue the head on.
            self.wfile.write(data)
            self.wfile.write(resp.body)

    def _abort(self) -> None:
        """Close the TCP connection with a reset (no TLS close_notify, no response)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address, app: DevCloudApp, ssl_context: ssl.SSLContext | None) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self.scheme = "https" if ssl_context else "http"
        super().__init__(address, Handler)

    def finish_request(self, request, client_address) -> None:
        # The TLS handshake runs here, in the connection's own thread, so a slow client
        # cannot stall accept().
        # Without TCP_NODELAY the tail of each response waits for the peer's delayed ACK
        # (Nagle): ~40 ms per request on keep-alive connections.
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            request.settimeout(30)
            try:
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                request.close()
                return
        try:
            self.RequestHandlerClass(request, client_address, self)
        except (ConnectionError, ssl.SSLError, TimeoutError, OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                request.close()

    def handle_error(self, request, client_address) -> None:
        pass


def make_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx
