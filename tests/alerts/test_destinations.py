"""Alerts go to the public internet only: a webhook or Teams URL pointing at loopback, a
private network or the cloud's metadata service is refused when saved and when sent, on
the connected socket itself (so a name that changes its answer between check and connect
is refused too)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from partner_portal.alerts import delivery, destinations, dispatch
from partner_portal.alerts.models import Channel, Delivery, DeliveryStatus
from tests.alerts.helpers import change, rule, webhook_channel


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "::ffff:127.0.0.1",
        "169.254.169.254",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "0.0.0.0",  # noqa: S104 (an address to judge, not to bind)
        "fd00::1",
        "fe80::1%eth0",
        "224.0.0.1",
    ],
)
def test_private_loopback_link_local_and_multicast_addresses_are_not_public(address):
    assert not destinations.is_public(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888", "52.96.0.1"])
def test_internet_addresses_are_public(address):
    assert destinations.is_public(address)


@given(st.ip_addresses())
def test_an_ipv4_address_and_its_ipv6_mapped_form_are_judged_alike(ip):
    if ip.version == 4:
        assert destinations.is_public(str(ip)) == destinations.is_public(f"::ffff:{ip}")


def test_a_webhook_to_loopback_fails_for_good_without_a_request(db, receiver, settings):
    settings.ALERTS_ALLOW_PRIVATE_DESTINATIONS = False
    hook = webhook_channel(receiver.url)
    rule(hook)
    change()
    (pk,) = dispatch.dispatch()
    assert delivery.deliver(delivery_id=pk).status == "failed"
    assert receiver.requests == []
    d = Delivery.objects.get(pk=pk)
    assert d.status == DeliveryStatus.FAILED
    assert "127.0.0.1 is not a public internet address" in d.last_error


def test_the_socket_is_checked_not_only_the_name(receiver, settings):
    """`localhost` could as well be a public name that now resolves to 127.0.0.1."""
    settings.ALERTS_ALLOW_PRIVATE_DESTINATIONS = False
    url = receiver.url.replace("127.0.0.1", "localhost")
    session = destinations.public_session(timeout=5)
    with pytest.raises(destinations.PrivateDestination):
        session.post(url, data=b"{}")
    assert receiver.requests == []


def test_a_redirect_is_not_followed(db, receiver):
    """A public receiver answering 307 could otherwise bounce the signed POST anywhere."""
    receiver.default = 307
    rule(webhook_channel(receiver.url))
    change()
    (pk,) = dispatch.dispatch()
    assert delivery.deliver(delivery_id=pk).status == "failed"
    assert len(receiver.requests) == 1
    assert Delivery.objects.get(pk=pk).last_error == "HTTP 307"


def test_a_teams_workflow_on_loopback_is_refused_before_apprise_sends(db, tls_receiver, settings):
    settings.ALERTS_ALLOW_PRIVATE_DESTINATIONS = False
    teams = Channel(name="SOC Teams", kind="teams")
    teams.url = f"workflow://127.0.0.1:{urlsplit(tls_receiver.url).port}/wf123/sig456/"
    teams.save()
    rule(teams)
    change()
    (pk,) = dispatch.dispatch()
    assert delivery.deliver(delivery_id=pk).status == "failed"
    assert tls_receiver.requests == []


@pytest.mark.parametrize(
    ("kind", "url"),
    [
        ("webhook", "http://169.254.169.254/latest/meta-data/"),
        ("webhook", "https://localhost:6379/"),
        ("webhook", "https://[::ffff:10.0.0.1]/hook"),
        ("webhook", "https://127.0.0.1:8443/hook"),
    ],
)
def test_the_form_refuses_a_private_destination(alice_client, kind, url):
    response = alice_client.post(
        reverse("alerts:channel_create"), {"name": "Inside", "kind": kind, "url": url}
    )
    assert "Alerts go to public internet addresses only" in response.content.decode()
    assert not Channel.objects.filter(name="Inside").exists()


def test_private_destinations_are_allowed_when_the_operator_says_so(alice_client, settings):
    settings.ALERTS_ALLOW_PRIVATE_DESTINATIONS = True
    response = alice_client.post(
        reverse("alerts:channel_create"),
        {"name": "LAN", "kind": "webhook", "url": "https://10.0.0.5/hook"},
    )
    assert response.context["secret"].startswith("whsec_")
    assert Channel.objects.get(name="LAN").url == "https://10.0.0.5/hook"
