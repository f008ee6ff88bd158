"""Dispatch and delivery as plain functions, with a real SMTP server and a real HTTP
receiver: exactly once per (rule, channel, incident, version), retries, give-up, no storms."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks import Webhook

from partner_portal.alerts import delivery, dispatch
from partner_portal.alerts.models import Channel, Delivery, DeliveryStatus
from partner_portal.incidents.models import ChangeKind, IncidentChange
from tests.alerts.helpers import change, email_channel, rule, webhook_channel
from tests.factories import ConsentedTenantFactory, IncidentFactory


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.ALERTS_RETRY_BACKOFF_SECONDS = 1
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def deliver_all(now=None):
    return [delivery.deliver(delivery_id=pk, now=now).status for pk in dispatch.dispatch(now=now)]


def test_a_matching_change_is_one_email_and_one_signed_webhook(db, smtp_server, receiver):
    mail, hook = email_channel(), webhook_channel(receiver.url)
    rule(mail, hook, min_severity="High")
    c = change()
    assert deliver_all() == ["sent", "sent"]
    (message,) = smtp_server.messages
    assert str(message["Subject"]).strip().startswith("[High] New High incident: ")
    assert c.incident.name in message.get_content()
    (request,) = receiver.requests
    # The spec's reference verification (the standardwebhooks package) accepts it.
    payload = Webhook(Channel.objects.get(pk=hook.pk).secret).verify(request.body, request.headers)
    assert payload["type"] == "incident.changed"
    assert payload["data"]["incident"]["id"] == c.incident.microsoft_id
    assert payload["data"]["changes"] == ["new"]
    assert request.headers["webhook-id"] == Delivery.objects.get(channel=hook).message_id
    # Again (a re-run of the dispatcher, the same change written twice): nothing more.
    IncidentChange.objects.update(dispatched_at=None)
    assert deliver_all() == ["skipped", "skipped"] or deliver_all() == []
    assert len(smtp_server.messages) == 1 and len(receiver.requests) == 1
    assert Delivery.objects.count() == 2


def test_a_tampered_body_fails_the_reference_verification(db, receiver):
    hook = webhook_channel(receiver.url)
    rule(hook)
    change()
    deliver_all()
    (request,) = receiver.requests
    with pytest.raises(Exception, match="signature"):
        Webhook(hook.secret).verify(request.body.replace(b"High", b"Low"), request.headers)


@pytest.mark.parametrize(
    ("rule_fields", "change_fields", "fires"),
    [
        ({"min_severity": "High"}, {"severity": "Medium"}, False),
        ({"min_severity": "Medium"}, {"severity": "High"}, True),
        ({"kinds": [ChangeKind.STATUS_CHANGED]}, {}, False),
        ({"kinds": [ChangeKind.NEW], "text": "RANSOM"}, {"tags": ["ransomware"]}, True),
        ({"text": "nothing like it"}, {}, False),
        ({"is_active": False}, {}, False),
    ],
)
def test_a_rule_fires_only_for_what_it_asks(db, rule_fields, change_fields, fires):
    mail = email_channel()
    rule(mail, **rule_fields)
    change(**change_fields)
    dispatch.dispatch()
    assert Delivery.objects.filter(status=DeliveryStatus.PENDING).exists() == fires


def test_a_rule_covers_only_its_tenants_and_what_its_creator_may_see(db, alice, tenant_a, tenant_b):
    mail = email_channel()
    mine = rule(mail, created_by=alice)  # "all I may see": tenant_a only
    chosen = rule(mail, name="b only", scope="tenants", created_by=alice)
    chosen.tenants.set([tenant_b])  # alice can't see it: never told
    change(IncidentFactory(tenant=tenant_a))
    change(IncidentFactory(tenant=tenant_b))
    dispatch.dispatch()
    assert [d.incident.tenant for d in Delivery.objects.filter(rule=mine)] == [tenant_a]
    assert not Delivery.objects.filter(rule=chosen).exists()


def test_two_dispatchers_and_duplicate_tasks_send_once(db, receiver):
    hook = webhook_channel(receiver.url)
    rule(hook)
    change()
    first = dispatch.dispatch()
    IncidentChange.objects.update(dispatched_at=None)  # as if the first crashed before marking
    second = dispatch.dispatch()
    assert first == second and len(first) == 1
    outcomes = [delivery.deliver(delivery_id=first[0]).status for _ in range(3)]
    assert outcomes == ["sent", "skipped", "skipped"]
    assert len(receiver.requests) == 1


def test_500_twice_then_200_is_delivered_once_with_the_same_webhook_id(db, receiver):
    receiver.statuses = [500, 503]
    hook = webhook_channel(receiver.url)
    rule(hook)
    change()
    (pk,) = dispatch.dispatch()
    now = timezone.now()
    first = delivery.deliver(delivery_id=pk, now=now)
    assert first.status == "retry" and 1 <= first.retry_in <= 1.25
    # Not due yet: a duplicate task finds nothing to send.
    assert delivery.deliver(delivery_id=pk, now=now).status == "skipped"
    second = delivery.deliver(delivery_id=pk, now=now + timedelta(seconds=2))
    assert second.status == "retry" and 2 <= second.retry_in <= 2.5
    assert delivery.deliver(delivery_id=pk, now=now + timedelta(seconds=5)).status == "sent"
    assert [r.headers["webhook-id"] for r in receiver.requests] == [
        Delivery.objects.get(pk=pk).message_id
    ] * 3
    d = Delivery.objects.get(pk=pk)
    assert (d.status, d.attempts, d.last_error) == (DeliveryStatus.SENT, 3, "")


def test_a_receiver_failing_for_good_marks_the_delivery_and_channel_failed(db, receiver, settings):
    settings.ALERTS_GIVE_UP_SECONDS = 5
    receiver.default = 502
    hook = webhook_channel(receiver.url)
    rule(hook)
    change()
    (pk,) = dispatch.dispatch()
    now, outcomes = timezone.now(), []
    for seconds in (0, 2, 5, 9):
        outcomes.append(delivery.deliver(delivery_id=pk, now=now + timedelta(seconds=seconds)))
        if outcomes[-1].status == "failed":
            break
    assert [o.status for o in outcomes] == ["retry", "retry", "failed"]
    d = Delivery.objects.get(pk=pk)
    assert (d.status, d.last_error) == (DeliveryStatus.FAILED, "HTTP 502")
    hook.refresh_from_db()
    assert hook.failing_since is not None and hook.last_error == "HTTP 502"


def test_a_permanent_refusal_fails_at_once(db, receiver):
    receiver.default = 410
    rule(webhook_channel(receiver.url))
    change()
    (pk,) = dispatch.dispatch()
    assert delivery.deliver(delivery_id=pk).status == "failed"
    assert len(receiver.requests) == 1


def test_an_unreachable_smtp_server_is_retried(db, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 9  # discard: refused
    rule(email_channel())
    change()
    (pk,) = dispatch.dispatch()
    assert delivery.deliver(delivery_id=pk).status == "retry"
    assert "Connection" in Delivery.objects.get(pk=pk).last_error


def test_a_worker_that_died_mid_send_is_taken_over_after_its_lease(db, receiver, settings):
    settings.ALERTS_SEND_LEASE_SECONDS = 30
    rule(webhook_channel(receiver.url))
    change()
    (pk,) = dispatch.dispatch()
    now = timezone.now()
    assert delivery.claim(delivery_id=pk, now=now)  # … and the worker is SIGKILLed
    assert delivery.deliver(delivery_id=pk, now=now + timedelta(seconds=10)).status == "skipped"
    assert dispatch.stale(now=now + timedelta(seconds=10)) == []
    later = now + timedelta(seconds=31)
    assert dispatch.stale(now=later) == [pk]
    assert delivery.deliver(delivery_id=pk, now=later).status == "sent"
    assert Delivery.objects.get(pk=pk).attempts == 2


def test_over_the_per_minute_cap_the_rest_is_one_digest(db, smtp_server, settings):
    settings.ALERTS_MAX_PER_CHANNEL_PER_MINUTE = 3
    rule(email_channel())
    tenant = ConsentedTenantFactory()
    for _ in range(10):
        change(IncidentFactory(tenant=tenant))
    due = dispatch.dispatch()
    assert Delivery.objects.filter(status=DeliveryStatus.FOLDED).count() == 7
    digest = Delivery.objects.get(digest_key__startswith="cap:")
    assert len(due) == 4 and digest.pk in due
    later = timezone.now() + timedelta(minutes=1)
    assert [delivery.deliver(delivery_id=pk, now=later).status for pk in due] == ["sent"] * 4
    subjects = [str(m["Subject"]).strip() for m in smtp_server.messages]
    assert len(subjects) == 4
    assert "7 incident changes (more than the channel's limit per minute)" in subjects


def test_a_digest_rule_sends_one_message_per_window(db, smtp_server):
    rule(email_channel(), digest_minutes=15)
    for _ in range(5):
        change()
    due = dispatch.dispatch()
    (digest,) = Delivery.objects.filter(digest_key__startswith="rule:")
    assert due == [digest.pk]
    # Not before its window closes.
    assert delivery.deliver(delivery_id=digest.pk).status == "skipped"
    assert delivery.deliver(delivery_id=digest.pk, now=digest.due_at).status == "sent"
    (message,) = smtp_server.messages
    assert str(message["Subject"]).strip() == "5 incident changes (digest)"


def test_a_first_sync_is_one_digest_not_a_flood(db, smtp_server, receiver):
    from partner_portal.incidents.models import SyncOutcome, SyncRun

    rule(email_channel(), webhook_channel(receiver.url))
    tenant = ConsentedTenantFactory(display_name="Contoso")
    for _ in range(240):
        change(IncidentFactory(tenant=tenant), imported=True)
    due = dispatch.dispatch()
    assert len(due) == 2  # one digest per channel
    later = timezone.now() + timedelta(minutes=1)
    # The tenant's first sync is still paging: the digest waits for it.
    assert {delivery.deliver(delivery_id=pk, now=later).status for pk in due} == {"waiting"}
    SyncRun.objects.create(tenant=tenant, started_at=later, outcome=SyncOutcome.SUCCESS)
    later += timedelta(minutes=1)
    assert [delivery.deliver(delivery_id=pk, now=later).status for pk in due] == ["sent"] * 2
    (message,) = smtp_server.messages
    assert str(message["Subject"]).strip() == "240 existing incidents imported — Contoso"
    (request,) = receiver.requests
    assert b'"count":240' in request.body


def test_would_have_fired_counts_the_last_7_days(db):
    r = rule(email_channel(), min_severity="High")
    tenant = ConsentedTenantFactory()
    for days, severity in [(1, "High"), (2, "High"), (3, "Low"), (8, "High")]:
        incident = IncidentFactory(
            tenant=tenant, last_update_time=timezone.now() - timedelta(days=days)
        )
        change(incident, severity=severity)
    change(IncidentFactory(tenant=tenant), imported=True)
    assert dispatch.would_have_fired(rule=r) == 2


def test_the_sweep_hands_a_backlog_out_again_only_once_a_minute(db, receiver):
    rule(webhook_channel(receiver.url))
    change()
    (pk,) = dispatch.dispatch()
    later = timezone.now() + timedelta(seconds=61)
    assert dispatch.stale(now=later) == [pk]  # its task may be lost: queue another
    assert dispatch.stale(now=later + timedelta(seconds=30)) == []  # not every dispatcher run
    assert dispatch.stale(now=later + timedelta(seconds=61)) == [pk]


def test_a_channel_encrypted_with_another_secret_key_fails_with_the_fix(db, receiver, settings):
    rule(webhook_channel(receiver.url))
    change()
    (pk,) = dispatch.dispatch()
    settings.SECRET_KEY = "another-secret-key-" * 3
    assert delivery.deliver(delivery_id=pk).status == "failed"
    assert "re-enter it" in Delivery.objects.get(pk=pk).last_error
    assert receiver.requests == []


def test_a_bug_while_sending_is_retried_then_given_up_never_stuck(db, receiver, monkeypatch):
    rule(webhook_channel(receiver.url))
    change()
    (pk,) = dispatch.dispatch()

    def broken(**kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr(delivery.channels, "send", broken)
    assert delivery.deliver(delivery_id=pk).status == "retry"
    d = Delivery.objects.get(pk=pk)
    assert (d.status, d.last_error) == (DeliveryStatus.PENDING, "KeyError: 'surprise'")


def test_teams_gets_a_readable_card_through_apprise(db, tls_receiver):
    """A Teams Workflows webhook (apprise's `workflow://host:port/workflow/signature`), here
    a local HTTPS receiver standing in for Power Automate."""
    import json
    from urllib.parse import urlsplit

    port = urlsplit(tls_receiver.url).port
    teams = Channel(name="SOC Teams", kind="teams")
    teams.url = f"workflow://127.0.0.1:{port}/wf123/sig456/"
    teams.save()
    rule(teams)
    c = change()
    (pk,) = dispatch.dispatch()
    assert delivery.deliver(delivery_id=pk).status == "sent"
    (request,) = tls_receiver.requests
    assert request.path.startswith("/workflows/wf123/triggers/manual/paths/invoke")
    card = json.dumps(json.loads(request.body))
    assert c.incident.name in card and "New High incident" in card


def test_teams_refusing_is_retried(db, tls_receiver):
    from urllib.parse import urlsplit

    tls_receiver.default = 503
    teams = Channel(name="SOC Teams", kind="teams")
    teams.url = f"workflow://127.0.0.1:{urlsplit(tls_receiver.url).port}/wf123/sig456/"
    teams.save()
    rule(teams)
    change()
    (pk,) = dispatch.dispatch()
    assert delivery.deliver(delivery_id=pk).status == "retry"
    assert "did not accept" in Delivery.objects.get(pk=pk).last_error


def test_old_outbox_rows_and_deliveries_are_pruned(db, receiver):
    rule(webhook_channel(receiver.url))
    change()
    (pk,) = dispatch.dispatch()
    delivery.deliver(delivery_id=pk)
    assert dispatch.prune(now=timezone.now() + timedelta(days=29)) == 0
    assert dispatch.prune(now=timezone.now() + timedelta(days=31)) >= 2
    assert not IncidentChange.objects.exists() and not Delivery.objects.exists()
