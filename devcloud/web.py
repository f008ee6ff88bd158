"""Tiny request/response types shared by devcloud's handlers (no framework)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.message import Message
from urllib.parse import parse_qs


@dataclass
class Request:
    method: str
    path: str
    raw_query: str
    headers: Message
    body: bytes
    scheme: str
    host: str
    query: dict[str, list[str]] = field(default_factory=dict)
    _form: dict[str, list[str]] | None = None
    # What a handler wants the request log to show (e.g. the client authentication used).
    note: str | None = None
    # The Microsoft cloud served (devcloud/clouds.py) and the path prefix it is served under.
    cloud: str = "commercial"
    prefix: str = ""

    def __post_init__(self) -> None:
        self.query = parse_qs(self.raw_query, keep_blank_values=True)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}{self.prefix}"

    def q(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    @property
    def form(self) -> dict[str, list[str]]:
        if self._form is None:
            try:
                text = self.body.decode("utf-8")
            except UnicodeDecodeError:
                text = ""
            self._form = parse_qs(text, keep_blank_values=True)
        return self._form

    def f(self, name: str) -> str | None:
        values = self.form.get(name)
        return values[0] if values else None

    def json(self):
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    # Set by fault injection: "reset", "hang", "truncate".
    action: str | None = None
    hang_s: float = 0.0

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


JSON = "application/json; charset=utf-8"


def json_response(
    status: int, obj: object, headers: list[tuple[str, str]] | None = None
) -> Response:
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(status, body, [("Content-Type", JSON), *(headers or [])])


def html_response(status: int, html: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(
        status,
        html.encode("utf-8"),
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "no-store"),
            *(headers or []),
        ],
    )


def redirect(location: str) -> Response:
    return Response(302, b"", [("Location", location), ("Cache-Control", "no-store")])
