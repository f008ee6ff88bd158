from __future__ import annotations

from datetime import timedelta

from partner_portal.alerts.models import Channel, ChannelKind, Rule
from partner_portal.incidents.models import ChangeKind, IncidentChange
from tests.factories import IncidentFactory

ALL_CHANGES = list(ChangeKind.values)


def email_channel(address: str = "soc@msp.example", **kw) -> Channel:
    return Channel.objects.create(name="SOC mail", kind=ChannelKind.EMAIL, recipients=address, **kw)


def webhook_channel(url: str, **kw) -> Channel:
    from partner_portal.alerts.models import new_signing_secret

    channel = Channel(name="SIEM hook", kind=ChannelKind.WEBHOOK, **kw)
    channel.url = url
    channel.secret = new_signing_secret()
    channel.save()
    return channel


def rule(*channels: Channel, kinds=None, min_severity: str = "", **kw) -> Rule:
    made = Rule.objects.create(
        name=kw.pop("name", "High and above"),
        kinds=ALL_CHANGES if kinds is None else kinds,
        min_severity=min_severity,
        **kw,
    )
    made.channels.set(channels)
    return made


def change(incident=None, *, kinds=(ChangeKind.NEW,), severity="High", minutes=0, **kw):
    incident = incident or IncidentFactory(severity=severity)
    version = incident.last_update_time + timedelta(minutes=minutes)
    return IncidentChange.objects.create(
        tenant=incident.tenant,
        incident=incident,
        version=version,
        kinds=list(kinds),
        before=kw.pop("before", {}),
        after={
            "name": incident.name,
            "severity": severity,
            "status": "Active",
            "assigned_to": "",
            "tags": kw.pop("tags", []),
        },
        **kw,
    )
