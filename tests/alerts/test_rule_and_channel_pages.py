"""Rule and channel pages: what staff see, what they may choose, what the rule page and the
dashboard banner say about deliveries."""

from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from partner_portal.alerts.demo import DEMO_RULE, ensure_demo_rule
from partner_portal.alerts.models import Channel, Delivery, DeliveryStatus, Rule
from partner_portal.incidents.models import IncidentChange
from tests.alerts.helpers import email_channel, rule, webhook_channel
from tests.factories import IncidentFactory, UserFactory


def test_a_webhook_channel_shows_its_secret_once_and_keeps_it_encrypted(alice_client, alice):
    response = alice_client.post(
        reverse("alerts:channel_create"),
        {"name": "SIEM", "kind": "webhook", "url": "https://siem.example/hook?token=s3cret"},
    )
    secret = response.context["secret"]
    assert secret.startswith("whsec_") and secret in response.content.decode()
    channel = Channel.objects.get(name="SIEM")
    assert channel.created_by == alice
    assert (channel.url, channel.secret) == ("https://siem.example/hook?token=s3cret", secret)
    assert "s3cret" not in channel.url_encrypted and secret not in channel.secret_encrypted
    page = alice_client.get(reverse("alerts:list")).content.decode()
    assert "siem.example" in page and "s3cret" not in page and secret not in page


def test_a_slack_channel_needs_a_slack_url(alice_client):
    response = alice_client.post(
        reverse("alerts:channel_create"),
        {"name": "Slack", "kind": "slack", "url": "https://example.com/not-slack"},
    )
    assert "Not a Slack (incoming webhook) URL." in response.content.decode()
    ok = alice_client.post(
        reverse("alerts:channel_create"),
        {
            "name": "Slack",
            "kind": "slack",
            "url": "https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
        },
    )
    assert ok.status_code == 302 and Channel.objects.filter(kind="slack").exists()


def test_a_rule_can_only_cover_tenants_its_author_sees(alice_client, alice, tenant_a, tenant_b):
    mail = email_channel(created_by=alice)
    form = {
        "name": "B",
        "scope": "tenants",
        "tenants": [tenant_b.pk],
        "kinds": ["new"],
        "channels": [mail.pk],
        "digest_minutes": 0,
        "is_active": "on",
    }
    response = alice_client.post(reverse("alerts:rule_create"), form)
    assert response.status_code == 200 and not Rule.objects.exists()
    response = alice_client.post(reverse("alerts:rule_create"), form | {"tenants": [tenant_a.pk]})
    made = Rule.objects.get()
    assert response.url == reverse("alerts:rule", kwargs={"rule_id": made.pk})
    assert list(made.tenants.all()) == [tenant_a] and made.created_by == alice


def test_the_rule_page_lists_the_last_50_deliveries_failed_ones_visible(alice_client, alice):
    r = rule(email_channel(created_by=alice), created_by=alice)
    incident = IncidentFactory()
    for i in range(55):
        change = IncidentChange.objects.create(
            tenant=incident.tenant,
            incident=incident,
            version=incident.last_update_time + timedelta(seconds=i),
            kinds=["new"],
            after={"name": f"incident version {i}"},
        )
        Delivery.objects.create(
            rule=r,
            channel=r.channels.get(),
            incident=incident,
            version=change.version,
            change=change,
            status=DeliveryStatus.FAILED if i == 54 else DeliveryStatus.SENT,
            message_id=f"msg_{i}",
            due_at=timezone.now(),
            give_up_at=timezone.now(),
            last_error="HTTP 503" if i == 54 else "",
        )
    # alice sees tenant_a only; the rule covers what she sees: give her the incident's tenant.
    alice.groups.first().tenants.add(incident.tenant)
    response = alice_client.get(reverse("alerts:rule", kwargs={"rule_id": r.pk}))
    assert len(response.context["deliveries"]) == 50
    page = response.content.decode()
    assert "incident version 54" in page and "HTTP 503" in page and "Failed" in page
    assert "incident version 4<" not in page


def test_testing_a_rule_says_how_often_it_would_have_fired(alice_client, alice, tenant_a):
    r = rule(email_channel(created_by=alice), created_by=alice, min_severity="High")
    for severity in ["High", "High", "Low"]:
        incident = IncidentFactory(tenant=tenant_a)
        IncidentChange.objects.create(
            tenant=tenant_a,
            incident=incident,
            version=incident.last_update_time,
            kinds=["new"],
            after={"name": incident.name, "severity": severity},
        )
    url = reverse("alerts:rule", kwargs={"rule_id": r.pk}) + "?test=7d"
    page = alice_client.get(url).content.decode()
    assert "would have fired 2 times" in page


def test_a_failing_channel_shows_on_the_dashboard_banner_of_its_owner(client, alice, bob):
    failing = webhook_channel("https://siem.example/hook", created_by=alice)
    Channel.objects.filter(pk=failing.pk).update(
        failing_since=timezone.now(), last_error="HTTP 503"
    )
    client.force_login(alice)
    page = client.get(reverse("incidents:list")).content.decode()
    assert 'id="failing-channels"' in page and "SIEM hook" in page and "HTTP 503" in page
    client.force_login(bob)
    assert 'id="failing-channels"' not in client.get(reverse("incidents:list")).content.decode()


def test_a_group_rule_is_shared_by_the_group(client, alice, team_a, charlie):
    shared = rule(email_channel(), scope="group", group=team_a, name="Team A")
    colleague = UserFactory(username="dana", groups=[team_a])
    client.force_login(colleague)
    assert client.get(reverse("alerts:rule", kwargs={"rule_id": shared.pk})).status_code == 200
    client.force_login(charlie)
    assert client.get(reverse("alerts:rule", kwargs={"rule_id": shared.pk})).status_code == 404


def test_the_demo_rule_is_made_once(db):
    user = UserFactory(username="demo", is_superuser=True)
    for _ in range(2):
        made = ensure_demo_rule(user=user)
    assert Rule.objects.get() == made and made.name == DEMO_RULE
    assert made.min_severity == "High" and made.channels.get().kind == "email"


def test_the_owner_deletes_a_rule_and_a_channel(alice_client, alice):
    mail = email_channel(created_by=alice)
    r = rule(mail, created_by=alice)
    alice_client.post(reverse("alerts:rule_delete", kwargs={"rule_id": r.pk}))
    assert not Rule.objects.exists()
    alice_client.post(reverse("alerts:channel_delete", kwargs={"channel_id": mail.pk}))
    assert not Channel.objects.exists()
