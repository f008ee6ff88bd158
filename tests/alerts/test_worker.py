"""Alerting end to end: devcloud → sync → outbox → real Celery workers → a real SMTP server
and a real HTTP receiver. Exactly one message per incident version, whatever repeats."""

from __future__ import annotations

import pytest
from standardwebhooks import Webhook

from partner_portal.alerts import dispatch, tasks
from partner_portal.alerts.models import Channel, Delivery, DeliveryStatus
from partner_portal.incidents import sync
from partner_portal.incidents.models import ChangeKind, Incident
from tests.alerts.helpers import email_channel, rule, webhook_channel
from tests.incidents.helpers import make_tenant, tid
from tests.workers import wait_until

pytestmark = pytest.mark.integration


def worker_env(smtp_server, **extra) -> dict[str, str]:
    return {"EMAIL_URL": smtp_server.url, "ALERTS_RETRY_BACKOFF_SECONDS": "1", **extra}


def add_high_incident(devcloud, tenant) -> int:
    """Let devcloud add incidents until one is High and Active (seeded: the same few). The
    others are synced and dispatched at once: call this before making the rules."""
    for seed in range(100):
        (added,) = devcloud.evolve(tid(tenant), changed=0, new=1, seed=seed)["added"]
        truth = {i["incidentId"]: i for i in devcloud.incidents(tid(tenant))}
        if (truth[added]["severity"], truth[added]["status"]) == ("High", "Active"):
            return added
        sync.sync_tenant(tenant=tenant)
        dispatch.dispatch()
    raise AssertionError("devcloud added no High incident")


def patch_incident(tenant, incident_id: int, **changes) -> None:
    """Change an incident in devcloud through the Defender API, as a SOC analyst would."""
    tenant.incident_client().update_incident(incident_id, **changes)


def run_dispatcher_until(predicate, what: str, timeout: float = 30):
    """Beat's job, done here: dispatch (and sweep) until the predicate holds."""

    def step():
        tasks.dispatch_alerts()
        return predicate()

    return wait_until(step, timeout=timeout, interval=0.5, what=what)


def test_a_new_high_incident_is_one_email_and_one_signed_webhook_and_a_status_change_one_more(
    start_worker, devcloud, devcloud_settings, smtp_server, receiver
):
    tenant = make_tenant(devcloud, devcloud_settings, count=0)
    devcloud.set_consent(
        tid(tenant),
        devcloud_settings["client_id"],
        roles=["Incident.Read.All", "Incident.ReadWrite.All"],
    )
    sync.sync_tenant(tenant=tenant)  # the first sync: nothing yet
    incident_id = add_high_incident(devcloud, tenant)
    hook = webhook_channel(receiver.url)
    rule(email_channel(), hook, min_severity="High")
    worker = start_worker(concurrency=2, env=worker_env(smtp_server))
    sync.sync_tenant(tenant=tenant)
    run_dispatcher_until(
        lambda: smtp_server.messages and receiver.requests, "the email and the webhook"
    )
    (message,) = smtp_server.messages
    assert str(message["Subject"]).strip().startswith("[High] New High incident: ")
    (request,) = receiver.requests
    payload = Webhook(Channel.objects.get(pk=hook.pk).secret).verify(request.body, request.headers)
    assert payload["data"]["incident"]["id"] == incident_id

    # A SOC analyst resolves it: one "status changed" message per channel.
    patch_incident(tenant, incident_id, status="Resolved")
    sync.sync_tenant(tenant=tenant)
    run_dispatcher_until(
        lambda: len(smtp_server.messages) == 2 and len(receiver.requests) == 2, "status change"
    )
    assert "Status changed: Active → Resolved" in str(smtp_server.messages[1]["Subject"])
    second = Webhook(hook.secret).verify(receiver.requests[1].body, receiver.requests[1].headers)
    assert second["data"]["changes"] == [ChangeKind.STATUS_CHANGED]

    # A full re-sync, a re-run of the dispatcher, every delivery task delivered twice more.
    sync.sync_tenant(tenant=tenant, full=True)
    tasks.dispatch_alerts()
    ids = list(Delivery.objects.values_list("pk", flat=True))
    done_before = worker.output.count("succeeded in")
    for delivery_id in ids * 2:
        tasks.deliver.delay(delivery_id=delivery_id)
    wait_until(
        lambda: worker.output.count("succeeded in") >= done_before + 2 * len(ids),
        what="the duplicate tasks to run",
    )
    assert worker.output.count("'skipped'") >= 2 * len(ids)
    assert len(smtp_server.messages) == 2 and len(receiver.requests) == 2
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SENT}
    assert Incident.objects.get(microsoft_id=incident_id).changes.count() == 2


def test_a_worker_killed_mid_delivery_is_replaced_and_the_message_keeps_its_id(
    start_worker, devcloud, devcloud_settings, smtp_server, receiver
):
    import threading

    tenant = make_tenant(devcloud, devcloud_settings, count=0)
    sync.sync_tenant(tenant=tenant)
    add_high_incident(devcloud, tenant)
    rule(webhook_channel(receiver.url), min_severity="High")
    receiver.hold = threading.Event()
    env = worker_env(smtp_server, ALERTS_SEND_LEASE_SECONDS="3")
    first = start_worker(concurrency=1, env=env)
    sync.sync_tenant(tenant=tenant)
    tasks.dispatch_alerts()
    wait_until(lambda: receiver.requests, what="the first try to reach the receiver")
    first.kill()  # mid-send: the receiver has the request, the worker never hears back
    receiver.hold.set()
    start_worker(concurrency=1, env=env)
    run_dispatcher_until(
        lambda: Delivery.objects.filter(status=DeliveryStatus.SENT).exists(),
        "another worker to take the delivery over",
    )
    (delivery,) = Delivery.objects.all()
    assert delivery.attempts == 2
    # Two tries of one message: a receiver deduplicating on webhook-id sees it once.
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery.message_id}


def test_500_twice_then_200_through_a_worker(
    start_worker, devcloud, devcloud_settings, smtp_server, receiver
):
    tenant = make_tenant(devcloud, devcloud_settings, count=0)
    sync.sync_tenant(tenant=tenant)
    add_high_incident(devcloud, tenant)
    rule(webhook_channel(receiver.url), min_severity="High")
    receiver.statuses = [500, 500]
    start_worker(concurrency=1, env=worker_env(smtp_server))
    sync.sync_tenant(tenant=tenant)
    tasks.dispatch_alerts()
    wait_until(
        lambda: Delivery.objects.filter(status=DeliveryStatus.SENT).exists(),
        timeout=30,
        what="the delivery after two failures",
    )
    assert len(receiver.requests) == 3
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1


def test_the_first_sync_of_a_tenant_is_one_digest(
    start_worker, devcloud, devcloud_settings, smtp_server, receiver
):
    rule(email_channel(), webhook_channel(receiver.url))
    tenant = make_tenant(devcloud, devcloud_settings, count=240)
    start_worker(concurrency=2, env=worker_env(smtp_server))
    sync.sync_tenant(tenant=tenant)
    assert tasks.dispatch_alerts() == 2  # a digest per channel, nothing per incident
    digest = Delivery.objects.filter(digest_key__startswith="import:")
    # The digest waits 30 s for the rest of the sync; here it has finished: send it now.
    digest.update(due_at=Delivery.objects.first().created_at)
    for pk in digest.values_list("pk", flat=True):
        tasks.deliver.delay(delivery_id=pk)
    wait_until(lambda: smtp_server.messages and receiver.requests, what="the digests")
    (message,) = smtp_server.messages
    assert str(message["Subject"]).strip().startswith("240 existing incidents imported")
    assert len(receiver.requests) == 1
    assert Delivery.objects.filter(status=DeliveryStatus.FOLDED).count() == 480
