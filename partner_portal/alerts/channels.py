"""What a delivery says, and sending it: email (Django's backend), a signed webhook
(Standard Webhooks), Slack and Teams (apprise). Every sender raises `SendFailed`, telling
whether trying again later can help."""

from __future__ import annotations

import json
import smtplib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from django.conf import settings
from django.core.mail import EmailMessage
from django.urls import reverse
from standardwebhooks import Webhook

from partner_portal.alerts import destinations
from partner_portal.alerts.models import Channel, ChannelKind, Delivery
from partner_portal.incidents.models import ChangeKind, Incident, IncidentChange
from partner_portal.microsoft import vocabulary
from partner_portal.microsoft.vocabulary import Kind

DIGEST_LINES = 50


class SendFailed(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.message = message[:1000]
        self.transient = transient


@dataclass
class Message:
    subject: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)
    type: str = "incident.changed"


def _describe(kinds: list[str], before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    severity = vocabulary.label(Kind.SEVERITY, after.get("severity", ""))
    said = []
    for kind in kinds:
        if kind == ChangeKind.NEW:
            said.append(f"New {severity} incident")
        elif kind == ChangeKind.SEVERITY_RAISED:
            old = vocabulary.label(Kind.SEVERITY, before.get("severity", ""))
            said.append(f"Severity raised: {old} → {severity}")
        elif kind == ChangeKind.STATUS_CHANGED:
            old = vocabulary.label(Kind.STATUS, before.get("status", ""))
            new = vocabulary.label(Kind.STATUS, after.get("status", ""))
            said.append(f"Status changed: {old} → {new}")
        elif kind == ChangeKind.REOPENED:
            said.append("Reopened")
        elif kind == ChangeKind.REASSIGNED:
            said.append(f"Reassigned to {after.get('assigned_to') or 'nobody'}")
    return said


def _change_of(delivery: Delivery) -> tuple[IncidentChange, Incident]:
    """The change and incident of a per-incident delivery (digest rows have neither)."""
    if delivery.change is None or delivery.incident is None:
        raise ValueError(f"delivery {delivery.pk} is not about one incident change")
    return delivery.change, delivery.incident


def _incident_message(delivery: Delivery) -> Message:
    change, incident = _change_of(delivery)
    rule_name = delivery.rule.name if delivery.rule is not None else None
    after, before = change.after, change.before
    said = _describe(change.kinds, before, after)
    severity = vocabulary.label(Kind.SEVERITY, after.get("severity", ""))
    tenant = incident.tenant.display_name
    link = settings.PUBLIC_BASE_URL + reverse("incidents:detail", args=[incident.pk])
    subject = f"[{severity}] {said[0]}: {after.get('name', '')} — {tenant}"
    lines = [
        *said,
        "",
        f"Incident: {after.get('name', '')} ({incident.microsoft_id})",
        f"Tenant: {tenant}",
        f"Severity: {severity}",
        f"Status: {vocabulary.label(Kind.STATUS, after.get('status', ''))}",
        f"Assigned to: {after.get('assigned_to') or '—'}",
        f"Updated: {change.version:%Y-%m-%d %H:%M:%S} UTC",
        "",
        f"In the portal: {link}",
    ]
    if incident.portal_url:
        lines.append(f"In Microsoft Defender: {incident.portal_url}")
    if rule_name:
        lines += ["", f"Rule: {rule_name}"]
    data = {
        "changes": change.kinds,
        "tenant": {"id": incident.tenant_id, "name": tenant},
        "incident": {
            "id": incident.microsoft_id,
            "url": link,
            "defender_url": incident.portal_url,
            "version": _iso(change.version),
            **after,
        },
        "previous": before,
        "rule": rule_name,
    }
    return Message(subject=subject[:250], text="\n".join(lines), data=data)


def _digest_message(delivery: Delivery) -> Message:
    folded = [
        _change_of(d)
        for d in delivery.folded.select_related("change", "incident__tenant").order_by(
            "version", "pk"
        )
    ]
    count = len(folded)
    key = delivery.digest_key
    if key.startswith("import:"):
        tenant = folded[0][1].tenant.display_name if folded else "a new tenant"
        subject = f"{count} existing incidents imported — {tenant}"
        intro = [
            f"The first sync of {tenant} imported {count} existing incidents that match "
            f"this rule. They are not sent one by one; new changes will be."
        ]
    else:
        why = "more than the channel's limit per minute" if key.startswith("cap:") else "digest"
        subject = f"{count} incident changes ({why})"
        intro = [f"{count} incident changes:"]
    lines = [*intro, ""]
    for change, incident in folded[:DIGEST_LINES]:
        said = _describe(change.kinds, change.before, change.after)
        lines.append(
            f"- {incident.tenant.display_name}: {change.after.get('name', '')} "
            f"({incident.microsoft_id}) — {'; '.join(said)}"
        )
    if count > DIGEST_LINES:
        lines.append(f"… and {count - DIGEST_LINES} more")
    lines += ["", "In the portal: " + settings.PUBLIC_BASE_URL + reverse("incidents:list")]
    data = {
        "count": count,
        "kind": key.split(":", 1)[0],
        "changes": [
            {
                "tenant": incident.tenant.display_name,
                "incident": incident.microsoft_id,
                "version": _iso(change.version),
                "changes": change.kinds,
            }
            for change, incident in folded[:DIGEST_LINES]
        ],
    }
    return Message(subject=subject[:250], text="\n".join(lines), data=data, type="digest")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def render(delivery: Delivery) -> Message:
    return _digest_message(delivery) if delivery.is_digest else _incident_message(delivery)


# --- senders ---------------------------------------------------------------------------


def send(*, channel: Channel, message: Message, message_id: str, now: datetime) -> None:
    if channel.kind == ChannelKind.EMAIL:
        send_email(channel=channel, message=message, message_id=message_id)
    elif channel.kind == ChannelKind.WEBHOOK:
        send_webhook(channel=channel, message=message, message_id=message_id, now=now)
    else:
        send_chat(channel=channel, message=message)


def send_email(*, channel: Channel, message: Message, message_id: str) -> None:
    email = EmailMessage(
        subject=message.subject.replace("\n", " "),
        body=message.text,
        to=channel.recipient_list,
        # The same Message-ID on every try: a mail system can drop a repeat.
        headers={"Message-ID": f"<{message_id}@partner-portal>"},
    )
    try:
        email.send()
    except smtplib.SMTPResponseException as exc:
        # 4xx: try later (greylisting, a full queue); 5xx: the server refuses for good.
        said = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
        raise SendFailed(said, transient=exc.smtp_code < 500) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        raise SendFailed(f"recipients refused: {list(exc.recipients)}", transient=False) from exc
    except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timeout, disconnected
        raise SendFailed(f"{type(exc).__name__}: {exc}", transient=True) from exc


def webhook_body(message: Message, *, now: datetime) -> str:
    # Standard Webhooks' payload shape: type, timestamp, data.
    payload = {"type": message.type, "timestamp": _iso(now), "data": message.data}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def send_webhook(*, channel: Channel, message: Message, message_id: str, now: datetime) -> None:
    """POST the JSON body signed per the Standard Webhooks spec: `webhook-id` (the same on
    every try), `webhook-timestamp` (this try's), `webhook-signature` (v1, HMAC-SHA256 of
    `id.timestamp.body` with the channel's secret)."""
    body = webhook_body(message, now=now)
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(channel.secret).sign(message_id, now, body),
    }
    session = destinations.public_session(timeout=settings.ALERTS_HTTP_TIMEOUT)
    try:
        # No redirects: a public receiver could otherwise bounce the POST to a private host.
        response = session.post(
            channel.url, data=body.encode(), headers=headers, allow_redirects=False
        )
    except destinations.PrivateDestination as exc:
        raise SendFailed(str(exc), transient=False) from exc
    except requests.RequestException as exc:
        raise SendFailed(f"{type(exc).__name__}: {exc}"[:300], transient=True) from exc
    finally:
        session.close()
    if 200 <= response.status_code < 300:
        return
    transient = response.status_code in (408, 409, 425, 429) or response.status_code >= 500
    raise SendFailed(f"HTTP {response.status_code}", transient=transient)


def send_chat(*, channel: Channel, message: Message) -> None:
    """Slack and Teams through apprise, which knows each service's message format. Teams'
    incoming webhooks are Power Automate Workflows URLs now (Office 365 connectors are
    retired)."""
    import apprise

    plugin = apprise.Apprise.instantiate(channel.url)
    if plugin is None:
        raise SendFailed(f"not a {channel.get_kind_display()} URL", transient=False)
    if channel.kind != ChannelKind.SLACK:  # Slack's messages go to hooks.slack.com only
        try:
            destinations.check_host(plugin.host, plugin.port)
        except destinations.PrivateDestination as exc:
            raise SendFailed(str(exc), transient=False) from exc
    sender = apprise.Apprise()
    sender.add(plugin)
    try:
        result = sender.notify(
            title=message.subject,
            body=message.text,
            body_format=apprise.NotifyFormat.TEXT,
        )
    except OSError as exc:
        raise SendFailed(f"{type(exc).__name__}: {exc}", transient=True) from exc
    if not result:
        # apprise tells only that the service did not take it: try again until give-up.
        refused = f"{channel.get_kind_display()} did not accept the message"
        raise SendFailed(refused, transient=True)
