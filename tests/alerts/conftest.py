"""Real receivers for alert messages: an SMTP server (aiosmtpd) and an HTTP server, each on
a free port of 127.0.0.1 in this process, recording what they receive."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(parsed)
        return "250 OK"


@dataclass
class SMTPServer:
    host: str
    port: int
    inbox: _Inbox

    @property
    def messages(self) -> list[Message]:
        return list(self.inbox.messages)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"


@pytest.fixture
def smtp_server(settings) -> Iterator[SMTPServer]:
    """An SMTP server; this process's Django sends mail to it."""
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    yield SMTPServer("127.0.0.1", port, inbox)
    controller.stop()


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP endpoint that answers with `statuses` in turn (then `default`), and can hold
    requests until `release` is set."""

    url: str
    requests: list[Request] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    default: int = 200
    hold: threading.Event | None = None
    latency: float = 0.0

    def answer(self) -> int:
        return self.statuses.pop(0) if self.statuses else self.default


@pytest.fixture
def private_destinations(settings, monkeypatch) -> None:
    """The receivers listen on loopback, which the portal refuses to send to by default (and
    in the workers these tests start, which read the environment)."""
    settings.ALERTS_ALLOW_PRIVATE_DESTINATIONS = True
    monkeypatch.setenv("ALERTS_ALLOW_PRIVATE_DESTINATIONS", "true")


@pytest.fixture
def receiver(private_destinations) -> Iterator[Receiver]:
    yield from _receive(tls=None)


@pytest.fixture
def tls_receiver(private_destinations, tmp_path, monkeypatch) -> Iterator[Receiver]:
    """The receiver over HTTPS with a throwaway CA that requests (in apprise) trusts."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    yield from _receive(tls=cert)


def _receive(tls) -> Iterator[Receiver]:
    port = free_port()
    scheme = "https" if tls else "http"
    state = Receiver(url=f"{scheme}://127.0.0.1:{port}/hook")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with lock:
                state.requests.append(Request(self.path, dict(self.headers), body))
                status = state.answer()
                hold = state.hold
            if hold is not None:
                hold.wait(30)
            if state.latency:
                threading.Event().wait(state.latency)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    if tls is not None:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.configure_cert(context)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    if state.hold is not None:
        state.hold.set()
    server.shutdown()
    server.server_close()
