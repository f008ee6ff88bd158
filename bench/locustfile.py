"""The technicians of bench/load.py: each signs in once, then works the incident list.

Run by bench/load.py (which starts gunicorn, makes the users and reads the figures); not
on its own. Settings come from the environment that bench/load.py sets:
LOAD_USERS_PREFIX, LOAD_PASSWORD, LOAD_USERS, LOAD_SECONDS, LOAD_READY_FILE,
LOAD_THINK_SECONDS, LOAD_MIX ("list" or "mixed").

Signing in hashes a password (a deliberate ~0.3 s of CPU) and is not what is measured:
when the last user has signed in, the stats start afresh, the ready file says when, and
the run stops LOAD_SECONDS later.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

import gevent
from locust import between, constant, task
from locust.contrib.fasthttp import FastHttpUser

THINK = float(os.environ.get("LOAD_THINK_SECONDS", "2"))
MIX = os.environ.get("LOAD_MIX", "list")
PREFIX = os.environ.get("LOAD_USERS_PREFIX", "bench-load-")
PASSWORD = os.environ.get("LOAD_PASSWORD", "")
USERS = int(os.environ.get("LOAD_USERS", "1"))
SECONDS = float(os.environ.get("LOAD_SECONDS", "60"))
READY = os.environ.get("LOAD_READY_FILE", "")
_numbers = itertools.count()
_signed_in = itertools.count(1)
CSRF = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')
NEXT = re.compile(rb'rel="next" href="([^"]+)"')
INCIDENT = re.compile(rb'<tr data-incident="(\d+)"')
HTMX = {"HX-Request": "true"}


class Technician(FastHttpUser):
    """A signed-in technician: opens the list, pages, filters; with the "mixed" work also
    searches, opens incidents and the summary, and polls for new incidents."""

    wait_time = constant(0) if THINK == 0 else between(THINK * 0.5, THINK * 1.5)

    def on_start(self) -> None:
        self.username = f"{PREFIX}{next(_numbers)}"
        self.next_url: str | None = None
        self.incidents: list[str] = []
        try:
            self._sign_in()
        finally:
            # Counted whether or not it worked (a failed sign-in is in the figures): the
            # run must not wait for it forever.
            if next(_signed_in) == USERS:  # the last one: measure from now, for SECONDS
                runner = self.environment.runner
                runner.stats.reset_all()
                if READY:
                    Path(READY).write_text("ready")
                gevent.spawn_later(SECONDS, runner.quit)

    def _sign_in(self) -> None:
        page = self.client.get("/login/", name="sign in (form)")
        token = CSRF.search(page.content or b"")
        assert token, "no CSRF token on the sign-in page"
        response = self.client.post(
            "/login/",
            data={
                "username": self.username,
                "password": PASSWORD,
                "csrfmiddlewaretoken": token.group(1).decode(),
            },
            headers={"Referer": f"{self.host}/login/"},
            name="sign in",
            allow_redirects=False,
        )
        assert response.status_code == 302, f"sign-in failed: {response.status_code}"

    def _remember(self, body: bytes | None) -> None:
        body = body or b""
        found = NEXT.search(body)
        self.next_url = found.group(1).decode().replace("&amp;", "&") if found else None
        self.incidents = [m.decode() for m in INCIDENT.findall(body)[:5]] or self.incidents

    @task(4)
    def open_the_list(self) -> None:
        self._remember(self.client.get("/?sort=-updated", name="list: page 1").content)

    @task(3)
    def next_page(self) -> None:
        if not self.next_url:
            return self.open_the_list()
        response = self.client.get(self.next_url, headers=HTMX, name="list: next page (htmx)")
        self._remember(response.content)
        return None

    @task(2)
    def filter_high(self) -> None:
        url = "/?severity=High&status=open&sort=-updated"
        self._remember(self.client.get(url, headers=HTMX, name="list: filter (htmx)").content)

    @task(1 if MIX == "mixed" else 0)
    def search(self) -> None:
        url = "/?q=powershell&sort=-updated"
        self._remember(self.client.get(url, headers=HTMX, name="list: search (htmx)").content)

    @task(1 if MIX == "mixed" else 0)
    def open_an_incident(self) -> None:
        if self.incidents:
            self.client.get(f"/incidents/{self.incidents[0]}/", name="incident page")

    @task(1 if MIX == "mixed" else 0)
    def summary(self) -> None:
        self.client.get("/incidents/summary/", name="summary")
