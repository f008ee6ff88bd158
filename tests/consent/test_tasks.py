"""The verification task: its retry schedule, and a real worker doing it end to end."""

from __future__ import annotations

import pytest

from partner_portal.consent import flow, tasks
from partner_portal.incidents.models import SyncOutcome, SyncRun
from partner_portal.microsoft import errors
from partner_portal.tenants.models import Tenant
from tests.consent.round_trip import consent
from tests.factories import TenantFactory
from tests.waiting import wait_until


def test_the_backoff_waits_about_ten_minutes_in_total():
    assert 540 <= sum(flow.BACKOFF_SECONDS) <= 660
    assert list(flow.BACKOFF_SECONDS) == sorted(flow.BACKOFF_SECONDS)


def test_a_throttled_attempt_waits_as_long_as_microsoft_asks():
    assert flow.retry_countdown(errors.Throttled(retry_after=42), 0) == 42
    assert flow.retry_countdown(errors.Throttled(retry_after=99999), 0) == 3600


def test_other_retries_follow_the_schedule():
    assert flow.retry_countdown(errors.ConsentRequired(), 0) == flow.BACKOFF_SECONDS[0]
    assert flow.retry_countdown(errors.Transient(), 99) == flow.BACKOFF_SECONDS[-1]


def test_the_sync_queued_after_consent_is_named_after_the_incident_sync_task():
    from partner_portal.celery import app
    from partner_portal.consent import flow
    from partner_portal.incidents import tasks as incident_tasks

    assert incident_tasks.sync_tenant.name == flow.SYNC_TASK
    assert flow.SYNC_TASK in app.tasks
    assert tasks.verify_tenant_access.name == flow.VERIFY_TASK


def test_consent_and_tenants_never_import_incidents():
    import ast
    from pathlib import Path

    import partner_portal

    root = Path(partner_portal.__file__).parent
    for app in ("consent", "tenants"):
        for path in (root / app).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                assert not any(n.startswith("partner_portal.incidents") for n in names), path


def test_the_task_is_acks_late_with_time_limits():
    task = tasks.verify_tenant_access
    assert task.acks_late is True
    assert task.soft_time_limit < task.time_limit <= 300


@pytest.mark.integration
def test_a_real_worker_confirms_the_consent_end_to_end(
    client, devcloud, devcloud_settings, start_worker, team_a, alice, settings
):
    from partner_portal.consent import flow

    start_worker(concurrency=1)
    dc = devcloud.create_tenant(display_name="Northwind")
    tenant = TenantFactory(display_name="Northwind", groups=[team_a])
    link = flow.create_link(tenant=tenant, created_by=alice, expected_tenant=dc["domain"])
    http = devcloud.session()
    page = consent(
        client, http, link, tid=dc["tenant_id"], public_base_url=settings.PUBLIC_BASE_URL
    )
    assert page.status_code == 200
    # The callback committed and enqueued the task on Redis; the worker picks it up.
    wait_until(
        lambda: Tenant.objects.get(pk=tenant.pk).consent_state == Tenant.ConsentState.CONSENTED,
        timeout=60,
        what="the worker to confirm the consent",
    )
    tenant.refresh_from_db()
    assert tenant.granted_roles == ["Incident.Read.All"]
    assert str(tenant.entra_tenant_id) == dc["tenant_id"]
    # …and queues its first sync, which the worker runs with the token the check cached.
    wait_until(
        lambda: SyncRun.objects.filter(tenant=tenant).exclude(outcome="running").exists(),
        timeout=60,
        what="the first sync",
    )
    runs = list(SyncRun.objects.filter(tenant=tenant).values_list("outcome", flat=True))
    assert runs == [SyncOutcome.SUCCESS]
    log = devcloud.requests_log(tenant=dc["tenant_id"])["by_endpoint"]
    assert (log["token"], log["list_incidents"]) == (1, 1)


@pytest.mark.integration
def test_a_worker_retries_until_the_consent_propagates(
    devcloud, devcloud_settings, start_worker, team_a
):
    start_worker(concurrency=1)
    dc = devcloud.create_tenant()
    tenant = TenantFactory(
        groups=[team_a], entra_tenant_id=dc["tenant_id"], consent_state=Tenant.ConsentState.PENDING
    )
    tasks.verify_tenant_access.delay(tenant_pk=tenant.pk)
    # First attempt: Entra does not know the app in the tenant yet (AADSTS7000229).
    wait_until(
        lambda: Tenant.objects.get(pk=tenant.pk).consent_error_class == "ConsentRequired",
        timeout=30,
        what="the first attempt",
    )
    assert Tenant.objects.get(pk=tenant.pk).consent_state == Tenant.ConsentState.PENDING
    devcloud.set_consent(dc["tenant_id"], devcloud_settings["client_id"], state="consented")
    wait_until(
        lambda: Tenant.objects.get(pk=tenant.pk).consent_state == Tenant.ConsentState.CONSENTED,
        timeout=60,
        what="the retry to succeed",
    )


def test_the_task_takes_tenant_pk_and_still_the_old_tenant_id(db):
    # Messages queued before the rename carry `tenant_id`; both must reach the same tenant.
    tenant = TenantFactory()  # no Entra tenant ID yet: recorded without a network call
    for kwargs in ({"tenant_pk": tenant.pk}, {"tenant_id": tenant.pk}):
        Tenant.objects.filter(pk=tenant.pk).update(consent_state=Tenant.ConsentState.PENDING)
        result = tasks.verify_tenant_access.apply(kwargs=kwargs).get()
        assert result == Tenant.ConsentState.NOT_CONSENTED
    assert tasks.verify_tenant_access.apply(kwargs={"tenant_pk": tenant.pk + 1000}).get() == "gone"
