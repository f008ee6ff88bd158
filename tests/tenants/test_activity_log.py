"""A tenant's activity log: what staff did (sync now, check access) and every recorded event,
in words."""

from __future__ import annotations

import pytest
from django.urls import reverse

from partner_portal.audit.models import AuditEvent
from partner_portal.incidents import tasks


@pytest.fixture
def enqueued(monkeypatch):
    calls = []
    monkeypatch.setattr(tasks.sync_tenant, "delay_on_commit", lambda **kw: calls.append(kw))
    return calls


def detail(client, tenant) -> str:
    return client.get(reverse("tenants:detail", kwargs={"tenant_pk": tenant.pk})).content.decode()


def test_sync_now_and_check_access_are_in_the_activity_log_in_words(
    alice_client, alice, tenant_a, enqueued, monkeypatch
):
    from partner_portal.consent import tasks as consent_tasks

    monkeypatch.setattr(consent_tasks.verify_tenant_access, "delay_on_commit", lambda **kw: None)
    alice.first_name, alice.last_name = "Alice", "Archer"
    alice.save()
    alice_client.post(reverse("incidents:sync_now", kwargs={"tenant_pk": tenant_a.pk}))
    alice_client.post(
        reverse("incidents:sync_now", kwargs={"tenant_pk": tenant_a.pk}), {"full": "1"}
    )
    alice_client.post(reverse("consent:check_access", kwargs={"tenant_pk": tenant_a.pk}))
    html = detail(alice_client, tenant_a)
    assert "Alice Archer pressed Sync now." in html
    assert "Alice Archer pressed Full re-sync." in html
    assert "Alice Archer pressed Check access." in html
    assert AuditEvent.objects.filter(tenant=tenant_a, actor=alice).count() == 3


def test_every_recorded_event_reads_as_words(tenant_a, alice):
    from partner_portal.audit.models import SENTENCES

    for action in SENTENCES:
        event = AuditEvent(action=action, actor=alice, tenant=tenant_a, data={"outcome": "x"})
        assert action not in event.sentence and event.sentence.endswith(".")
    # A code nobody described yet still says something, and hostile data can't break it.
    assert AuditEvent(action="new.thing", data=["\x00"]).sentence == "The portal: new.thing"
