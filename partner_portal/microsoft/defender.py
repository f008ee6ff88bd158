"""Microsoft 365 Defender incidents: what the API answers, parsed into dataclasses.

Plain Python, no Django and no HTTP (`client.DefenderClient` makes the calls). Parsing is
tolerant: missing, extra and null fields are fine, and enum-like values (whose spellings
vary across Microsoft's docs and API versions) are kept as the raw strings received. Graph's
`security/incidents` field names are accepted too (protocols §7.9), as they cost one `or`.

Reference: https://learn.microsoft.com/en-us/defender-xdr/api-incident
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from partner_portal.microsoft import errors


@dataclass(frozen=True)
class AlertData:
    alert_id: str
    title: str = ""
    description: str = ""
    severity: str = ""
    category: str = ""
    status: str = ""
    detection_source: str = ""
    service_source: str = ""
    mitre_techniques: list[str] = field(default_factory=list)
    first_activity: datetime | None = None
    last_activity: datetime | None = None
    devices: list[dict[str, Any]] = field(default_factory=list)
    entities: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IncidentData:
    incident_id: int
    last_update_time: datetime
    created_time: datetime
    name: str = ""
    severity: str = ""
    status: str = ""
    classification: str = ""
    determination: str = ""
    assigned_to: str = ""
    tags: list[str] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    redirect_incident_id: int | None = None
    incident_uri: str = ""
    alerts: list[AlertData] = field(default_factory=list)
    # The incident as received, without `alerts` (each AlertData keeps its own raw).
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    """One page of the incident list. `number` counts from 1; `api_calls` made for it."""

    number: int
    incidents: list[IncidentData]
    api_calls: int
    # Where the next page is (a nextLink URL, or the $skip to use); None on the last page.
    next_url: str | None
    next_skip: int | None

    @property
    def is_last(self) -> bool:
        return self.next_url is None and self.next_skip is None


# --- parsing ------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 with up to 7 fractional digits (.NET ticks) → an aware UTC datetime.

    Python keeps microseconds, so the 7th digit is dropped (rounded down): a watermark made
    from it can only be earlier than Microsoft's, never later.
    """
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    match = re.match(r"^(.*T\d{2}:\d{2}:\d{2})(\.\d+)?(.*)$", text)
    if match and match.group(2) and len(match.group(2)) > 7:
        text = match.group(1) + match.group(2)[:7] + match.group(3)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_time(value: datetime) -> str:
    """The OData literal: `2020-06-03T18:04:29.463333Z` (UTC, unquoted in $filter)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _first(data: dict[str, Any], *names: str) -> Any:
    """The first of `names` present and not null (Defender name first, then Graph's)."""
    for name in names:
        value = data.get(name)
        if value is not None:
            return value
    return None


def parse_alert(data: dict[str, Any]) -> AlertData:
    alert_id = _text(_first(data, "alertId", "id"))
    if not alert_id:
        raise errors.BadResponse("An alert without alertId")
    devices = _list(data.get("devices"))
    entities = _list(data.get("entities"))
    if not devices and not entities and data.get("evidence"):
        # Graph puts devices, users, files… into one polymorphic `evidence` list.
        entities = _list(data.get("evidence"))
    return AlertData(
        alert_id=alert_id,
        title=_text(data.get("title")),
        description=_text(data.get("description")),
        severity=_text(data.get("severity")),
        category=_text(data.get("category")),
        status=_text(data.get("status")),
        detection_source=_text(data.get("detectionSource")),
        service_source=_text(data.get("serviceSource")),
        mitre_techniques=[_text(t) for t in _list(data.get("mitreTechniques"))],
        first_activity=parse_time(_first(data, "firstActivity", "firstActivityDateTime")),
        last_activity=parse_time(_first(data, "lastActivity", "lastActivityDateTime")),
        devices=[d for d in devices if isinstance(d, dict)],
        entities=[e for e in entities if isinstance(e, dict)],
        raw=data,
    )


def parse_incident(data: Any) -> IncidentData:
    """One incident object (Defender or Graph shape). BadResponse when it lacks an ID or a
    last-update time: without them it can be neither stored nor watermarked."""
    if not isinstance(data, dict):
        raise errors.BadResponse("An incident that is not a JSON object")
    incident_id = _int(_first(data, "incidentId", "id"))
    updated = parse_time(_first(data, "lastUpdateTime", "lastUpdateDateTime"))
    if incident_id is None or updated is None:
        raise errors.BadResponse("An incident without incidentId or lastUpdateTime")
    created = parse_time(_first(data, "createdTime", "createdDateTime")) or updated
    tags = _list(data.get("tags")) or _list(data.get("customTags"))
    alerts = [parse_alert(a) for a in _list(data.get("alerts")) if isinstance(a, dict)]
    return IncidentData(
        incident_id=incident_id,
        last_update_time=updated,
        created_time=created,
        name=_text(_first(data, "incidentName", "displayName")),
        severity=_text(data.get("severity")),
        status=_text(data.get("status")),
        classification=_text(data.get("classification")),
        determination=_text(data.get("determination")),
        assigned_to=_text(data.get("assignedTo")),
        tags=[_text(t) for t in tags],
        comments=[c for c in _list(data.get("comments")) if isinstance(c, dict)],
        redirect_incident_id=_int(data.get("redirectIncidentId")),
        incident_uri=_text(_first(data, "incidentUri", "incidentWebUrl")),
        alerts=alerts,
        raw={k: v for k, v in data.items() if k != "alerts"},
    )


def parse_list(body: Any) -> tuple[list[IncidentData], str | None]:
    """A list response → (incidents, @odata.nextLink or None)."""
    if not isinstance(body, dict) or not isinstance(body.get("value"), list):
        raise errors.BadResponse("The incident list has no 'value' array")
    next_link = body.get("@odata.nextLink")
    return [parse_incident(i) for i in body["value"]], next_link if next_link else None


# The fields a PATCH may change (`DefenderClient.update_incident`).
UPDATABLE = ("status", "assignedTo", "classification", "determination", "tags", "comment")
