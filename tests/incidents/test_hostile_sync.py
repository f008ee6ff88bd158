"""The sync survives whatever Microsoft sends (issue 10), end to end against devcloud over TLS:
hostile incidents are stored repaired or kept as sync problems that later runs retry one by
one, hostile links never get the token, a discovery hiccup is not an unknown tenant.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from partner_portal.incidents import sync
from partner_portal.incidents.models import Incident, SyncOutcome, SyncProblem
from partner_portal.microsoft import errors
from partner_portal.microsoft.defender import parse_time
from partner_portal.tenants.models import Tenant
from tests.incidents.helpers import make_tenant, tid

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _local_cache(settings):
    # The call budget lives in the cache: a fresh local one per test.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


class Listener:
    """A plain local HTTP server that records every request (path and Authorization header)
    and answers each GET with `body` (JSON)."""

    def __init__(self, body: dict | None = None) -> None:
        self.requests: list[tuple[str, str]] = []
        self.body = body or {"value": []}
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                listener.requests.append((self.path, self.headers.get("Authorization", "")))
                data = json.dumps(listener.body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def api_requests(devcloud, tenant) -> dict[str, int]:
    counts = devcloud.requests_log(tid(tenant), entries=False)["by_endpoint"]
    return {k: v for k, v in counts.items() if k not in ("discovery", "token", "jwks")}


def test_a_resume_cursor_to_another_host_is_refused_before_the_token_is_sent(
    db, devcloud, devcloud_settings, listener
):
    tenant = make_tenant(devcloud, devcloud_settings, count=3)
    run = sync.sync_tenant(
        tenant=tenant, resume={"next_url": f"{listener.url}/api/incidents?$skip=100"}
    )
    assert (run.outcome, run.error_class) == (SyncOutcome.FAILED, "BadResponse")
    assert "not the API host" in run.error_message
    assert listener.requests == []
    assert api_requests(devcloud, tenant) == {}
    tenant.refresh_from_db()
    assert tenant.incidents_watermark is None
    assert tenant.consent_state == Tenant.ConsentState.CONSENTED  # not about consent


@pytest.mark.parametrize("where", ["devcloud", "another listener", "same host, other scheme"])
def test_a_next_link_to_another_host_never_gets_the_token(
    db, devcloud, devcloud_settings, listener, settings, where
):
    """The API (a local listener standing in for it) answers a page whose nextLink points
    elsewhere: to devcloud (whose request log would show the token's tenant), to a second
    listener, or to the API's own host over https."""
    tenant = make_tenant(devcloud, devcloud_settings, count=3)
    other = Listener()
    try:
        target = {
            "devcloud": f"{devcloud.base_url}/api/incidents?$skip=1",
            "another listener": f"{other.url}/api/incidents?$skip=1",
            "same host, other scheme": listener.url.replace("http:", "https:") + "/api/incidents",
        }[where]
        listener.body = {
            "value": [{"incidentId": 1, "lastUpdateTime": "2026-01-01T00:00:00Z"}],
            "@odata.nextLink": target,
        }
        settings.MICROSOFT_DEFENDER_BASE_URL = listener.url
        run = sync.sync_tenant(tenant=tenant)
        assert (run.outcome, run.error_class) == (SyncOutcome.FAILED, "BadResponse")
        # The first page went to the configured API with the token, and nothing else did.
        assert len(listener.requests) == 1
        assert listener.requests[0][1].startswith("Bearer ")
        assert other.requests == []
        assert api_requests(devcloud, tenant) == {}
        assert Incident.objects.filter(tenant=tenant, microsoft_id=1).exists()
        tenant.refresh_from_db()
        assert tenant.incidents_watermark is None  # the listing did not finish
    finally:
        other.close()


def test_a_discovery_429_is_transient_and_the_tenant_stays_consented(
    db, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=3)
    devcloud.add_fault(
        endpoint="discovery", tenant=tid(tenant), kind="status", status=429, retry_after=3
    )
    with pytest.raises(errors.RetryLater) as info:
        sync.sync_tenant(tenant=tenant)
    assert isinstance(info.value.cause, errors.Throttled)
    assert info.value.countdown == 3
    tenant.refresh_from_db()
    assert tenant.consent_state == Tenant.ConsentState.CONSENTED
    assert tenant.last_sync_outcome == SyncOutcome.THROTTLED
    assert tenant.consent_error_class == ""
    devcloud.clear_faults()
    run = sync.sync_tenant(tenant=tenant, resume=info.value.cursor)
    assert run.outcome == SyncOutcome.SUCCESS
    assert Incident.objects.filter(tenant=tenant).count() == 3


# --- 300 incidents, 5 of them hostile, end to end ------------------------------------------


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_problem_the_listing_receives_again_is_not_fetched_again_in_that_run(
    db, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=3)
    broken = hostile(9_100_001, timezone.now() - timedelta(days=3), alerts=[{"title": "no id"}])
    put_raw(devcloud, tenant, broken)
    sync.sync_tenant(tenant=tenant)
    problem = SyncProblem.objects.get(tenant=tenant)
    old = api_requests(devcloud, tenant)

    # A full listing receives it again (still broken): seen by this run, no GET for it.
    run = sync.sync_tenant(tenant=Tenant.objects.get(pk=tenant.pk), full=True)
    new = api_requests(devcloud, tenant)
    assert (run.outcome, run.problems) == (SyncOutcome.SUCCESS, 1)
    assert new.get("get_incident", 0) == old.get("get_incident", 0)
    problem.refresh_from_db()
    assert problem.count == 2 and problem.last_seen >= run.started_at

    # An incremental run does not list it (it is days old): one GET, as before.
    run = sync.sync_tenant(tenant=Tenant.objects.get(pk=tenant.pk))
    assert api_requests(devcloud, tenant).get("get_incident", 0) == new.get("get_incident", 0) + 1
    problem.refresh_from_db()
    assert (run.problems, problem.count) == (1, 3)


def test_problem_batches_hand_out_each_problem_once_while_retries_move_them(db, tenant_a):
    start = timezone.now()
    for n in range(10):
        SyncProblem.objects.create(
            tenant=tenant_a,
            microsoft_id=str(n),
            key=f"k{n}",
            error="x",
            raw_text="{}",
            first_seen=start - timedelta(hours=1),
            last_seen=start - timedelta(minutes=10 - n // 2),  # ties, broken by pk
        )
    waiting = SyncProblem.objects.filter(tenant=tenant_a, last_seen__lt=start)
    handed = []
    for problem in sync._in_batches(waiting, size=3):
        handed.append(problem.microsoft_id)
        if int(problem.microsoft_id) % 2:  # retried: seen now, out of the set mid-iteration
            SyncProblem.objects.filter(pk=problem.pk).update(last_seen=timezone.now())
    assert handed == [str(n) for n in range(10)]


def put_raw(devcloud, tenant, incident: dict) -> None:
    # json.dumps writes NULs and lone surrogates as \u escapes: the JSON text Microsoft
    # would send (a Python str with a lone surrogate has no UTF-8 form of its own).
    devcloud.put_raw_incident(tid(tenant), json.dumps(incident))


def hostile(n: int, updated: datetime, **fields) -> dict:
    return {
        "incidentId": n,
        "incidentUri": f"https://security.microsoft.com/incidents/{n}",
        "incidentName": f"hostile {n}",
        "createdTime": iso(updated - timedelta(hours=1)),
        "lastUpdateTime": iso(updated),
        "severity": "High",
        "status": "Active",
        "alerts": [{"alertId": f"da{n}_1", "title": "ok"}],
        **fields,
    }


def test_300_incidents_5_hostile_are_stored_or_sync_problems_and_retried_one_by_one(
    db, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=295)
    now = timezone.now()
    prefix = "da" + "0123456789" * 29  # 292 characters shared
    nul, surrogate, no_alert_id, long_ids, year_one = range(9_000_001, 9_000_006)
    put_raw(
        devcloud,
        tenant,
        hostile(
            nul,
            now - timedelta(minutes=1),  # the newest of all: it sets the watermark
            alerts=[
                {
                    "alertId": f"da{nul}_1",
                    "entities": [
                        {"entityType": "Registry", "registryValue": "evil\x00value"},
                        {"entityType": "Process", "processCommandLine": "cmd.exe /c \x00"},
                    ],
                }
            ],
        ),
    )
    put_raw(
        devcloud,
        tenant,
        hostile(
            surrogate,
            now - timedelta(hours=2),
            comments=[{"comment": "half an emoji \ud83d here", "createdBy": "x"}],
        ),
    )
    broken = hostile(no_alert_id, now - timedelta(days=10), alerts=[{"title": "no alertId"}])
    put_raw(devcloud, tenant, broken)
    put_raw(
        devcloud,
        tenant,
        hostile(
            long_ids,
            now - timedelta(hours=3),
            alerts=[{"alertId": prefix + "_first"}, {"alertId": prefix + "_other"}],
        ),
    )
    put_raw(
        devcloud,
        tenant,
        hostile(year_one, now - timedelta(hours=4), createdTime="0001-01-01T00:00:00+05:00"),
    )

    run = sync.sync_tenant(tenant=tenant)

    assert run.outcome == SyncOutcome.SUCCESS
    assert Incident.objects.filter(tenant=tenant).count() == 299
    assert (run.created_count, run.problems) == (299, 1)
    stored = Incident.objects.filter(tenant=tenant)
    row = stored.get(microsoft_id=nul)
    assert row.text_repaired
    assert row.alerts.get().entities == [
        {"entityType": "Registry", "registryValue": "evil\ufffdvalue"},
        {"entityType": "Process", "processCommandLine": "cmd.exe /c \ufffd"},
    ]
    row = stored.get(microsoft_id=surrogate)
    assert row.text_repaired
    assert row.comments == [{"comment": "half an emoji \ufffd here", "createdBy": "x"}]
    assert row.raw["comments"] == row.comments
    row = stored.get(microsoft_id=long_ids)
    assert sorted(row.alerts.values_list("microsoft_id", flat=True)) == [
        prefix + "_first",
        prefix + "_other",
    ]
    row = stored.get(microsoft_id=year_one)
    assert row.raw["createdTime"] == "0001-01-01T00:00:00+05:00"
    assert row.created_time == row.last_update_time  # unknown: not an overflow
    assert not row.text_repaired
    problem = SyncProblem.objects.get(tenant=tenant)
    assert problem.microsoft_id == str(no_alert_id)
    assert "alertId" in problem.error
    assert json.loads(problem.raw_text) == broken
    tenant.refresh_from_db()
    assert tenant.incidents_watermark == parse_time(iso(now - timedelta(minutes=1)))

    # The next run: one list call for the window, and one GET for the problem incident.
    before = api_requests(devcloud, tenant)
    run = sync.sync_tenant(tenant=tenant)
    after = api_requests(devcloud, tenant)
    assert run.outcome == SyncOutcome.SUCCESS
    assert {k: after.get(k, 0) - before.get(k, 0) for k in after} == {
        "list_incidents": 1,
        "get_incident": 1,
    }
    problem.refresh_from_db()
    assert problem.count == 2
    assert run.problems == 1

    # Microsoft fixes the incident (its lastUpdateTime unchanged, outside the window): the
    # next run's GET stores it and clears the problem; the run after makes no GET at all.
    put_raw(devcloud, tenant, {**broken, "alerts": [{"alertId": "now-here", "title": "x"}]})
    run = sync.sync_tenant(tenant=tenant)
    assert (run.outcome, run.problems, run.created_count) == (SyncOutcome.SUCCESS, 0, 1)
    assert not SyncProblem.objects.filter(tenant=tenant).exists()
    assert Incident.objects.filter(tenant=tenant).count() == 300
    before = api_requests(devcloud, tenant)
    sync.sync_tenant(tenant=tenant)
    after = api_requests(devcloud, tenant)
    assert {k: after.get(k, 0) - before.get(k, 0) for k in after} == {
        "list_incidents": 1,
        "get_incident": 0,
    }
