"""Microsoft 365 Defender incidents: what the API answers, parsed into dataclasses.

Plain Python, no Django and no HTTP (`client.DefenderClient` makes the calls). Parsing is
tolerant: missing, extra and null fields are fine; enum-like values (whose spellings vary
across Microsoft's docs and API versions) are normalised once by `vocabulary` (the original
stays in `raw`); text a database would refuse (NUL, lone surrogates) is repaired. A list page
is parsed item by item: an item that cannot be parsed becomes an `ItemProblem` of that page,
never a failed page. Graph's `security/incidents` field names are accepted too (protocols
§7.9), as they cost one `or`.

Reference: https://learn.microsoft.com/en-us/defender-xdr/api-incident
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from partner_portal.microsoft import errors
from partner_portal.microsoft.vocabulary import Kind, normalise

# Text no database stores as is: NUL (PostgreSQL refuses it in text and jsonb) and UTF-16
# surrogates, which JSON's \uD83D escapes can produce alone and UTF-8 cannot encode.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"
# Incident IDs are longs (Graph sends the same numbers as strings): a PostgreSQL bigint.
MAX_INCIDENT_ID = 2**63 - 1


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
    # The incident as received, without `alerts` (each AlertData keeps its own raw), except
    # for the repairs `repair_text` made (then `text_repaired`).
    raw: dict[str, Any] = field(default_factory=dict)
    text_repaired: bool = False


@dataclass(frozen=True)
class ItemProblem:
    """One item of a list that could not be parsed (or, later, stored): what we know of it.

    `incident_id` is the ID as sent ("" when there is none), `raw_text` the item as received,
    as JSON with every non-ASCII character escaped (so NULs and lone surrogates survive as
    `\\u0000` text, storable anywhere).
    """

    incident_id: str
    error: str
    raw_text: str
    last_update_time: datetime | None = None

    @classmethod
    def of(cls, data: Any, exc: BaseException) -> ItemProblem:
        incident_id = _first(data, "incidentId", "id") if isinstance(data, dict) else None
        updated = (
            _first(data, "lastUpdateTime", "lastUpdateDateTime") if isinstance(data, dict) else None
        )
        message = exc.message if isinstance(exc, errors.MicrosoftError) else str(exc)
        error = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        return cls(
            incident_id=repair_text(_text(incident_id))[0],
            error=repair_text(error)[0][:2000],
            raw_text=json.dumps(data, ensure_ascii=True),
            last_update_time=parse_time(updated),
        )


@dataclass(frozen=True)
class Page:
    """One page of the incident list. `number` counts from 1; `api_calls` made for it."""

    number: int
    incidents: list[IncidentData]
    api_calls: int
    # Where the next page is (a nextLink URL, or the $skip to use); None on the last page.
    next_url: str | None
    next_skip: int | None
    # Items of this page that could not be parsed.
    problems: list[ItemProblem] = field(default_factory=list)

    @property
    def is_last(self) -> bool:
        return self.next_url is None and self.next_skip is None


# --- parsing ------------------------------------------------------------------------------


def repair_text(value: Any) -> tuple[Any, bool]:
    """NUL and lone surrogates → U+FFFD, in a string or anywhere in decoded JSON (keys too).
    Returns (the value, whether anything was replaced); an untouched value is returned as is.
    """
    if isinstance(value, list | dict):
        # Almost always clean: json.dumps (in C) and two scans say so, where walking every
        # value in Python cost more than the rest of parsing. NUL comes out as the escape
        # backslash-u0000 (a false alarm when that was text all along: it only costs the
        # walk), surrogates as they are (none in ASCII).
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            text = "\\u0000"  # not JSON after all: walk it
        if "\\u0000" not in text and (text.isascii() or _UNSTORABLE.search(text) is None):
            return value, False
    return _repair(value)


def _repair(value: Any) -> tuple[Any, bool]:
    if isinstance(value, str):
        if _UNSTORABLE.search(value) is None:
            return value, False
        return _UNSTORABLE.sub(REPLACEMENT, value), True
    if isinstance(value, list):
        items = [_repair(v) for v in value]
        if not any(changed for _, changed in items):
            return value, False
        return [v for v, _ in items], True
    if isinstance(value, dict):
        pairs = [(_repair(k), _repair(v)) for k, v in value.items()]
        if not any(kc or vc for (_, kc), (_, vc) in pairs):
            return value, False
        return {k: v for (k, _), (v, _) in pairs}, True
    return value, False


# Decoded JSON holds a NUL or a lone surrogate only through one of these escapes: strict JSON
# has no raw control characters, and UTF-8 encodes no surrogates. (A surrogate pair, an emoji
# written as escapes, matches too: such a page takes the walk.)
_REPAIRABLE_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def text_needs_repair(content: bytes) -> bool:
    """Whether JSON text as received may decode to something `repair_text` replaces: one
    search of the bytes instead of a walk through every decoded string (a page of incidents
    holds tens of thousands)."""
    return _REPAIRABLE_ESCAPE.search(content) is not None


class CheckedItems(list[Any]):
    """The items of a list answer whose text was checked as received (`text_needs_repair`)
    and holds nothing to repair: they parse without the walk."""


_FRACTION = re.compile(r"^(.*T\d{2}:\d{2}:\d{2})(\.\d+)?(.*)$")


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 with up to 7 fractional digits (.NET ticks) → an aware UTC datetime.

    Python keeps microseconds, so the 7th digit is dropped (rounded down): a watermark made
    from it can only be earlier than Microsoft's, never later.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        # Python 3.11+ reads Microsoft's usual form as it is ("Z", 7 digits rounded down);
        # the edits of `_lenient`, for the rest, cost more than the parsing.
        parsed = datetime.fromisoformat(value)
    except ValueError:
        lenient = _lenient(value)
        if lenient is None:
            return None
        parsed = lenient
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # Year 1 with a positive offset (or 9999 with a negative one) is outside what UTC can
        # hold. Unknown, like any other unreadable time.
        return None


def _lenient(value: str) -> datetime | None:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    match = _FRACTION.match(text)
    if match and match.group(2) and len(match.group(2)) > 7:
        text = match.group(1) + match.group(2)[:7] + match.group(3)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def format_time(value: datetime) -> str:
    """The OData literal: `2020-06-03T18:04:29.463333Z` (UTC, unquoted in $filter)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _incident_id(value: Any) -> int:
    """A Defender `incidentId` (a long) or Graph `id` (the same number as a string)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool):
        raise errors.BadResponse(f"An incident whose ID is not a number: {_text(value)[:100]!r}")
    if not 0 <= value <= MAX_INCIDENT_ID:
        raise errors.BadResponse(f"An incident ID out of range: {value}")
    return value


def _first(data: dict[str, Any], *names: str) -> Any:
    """The first of `names` present and not null (Defender name first, then Graph's)."""
    for name in names:
        value = data.get(name)
        if value is not None:
            return value
    return None


def parse_alert(data: Any) -> AlertData:
    """One alert. BadResponse without an ID: alerts are stored by it."""
    if not isinstance(data, dict):
        raise errors.BadResponse("An alert that is not a JSON object")
    alert_id = _text(_first(data, "alertId", "id"))
    if not alert_id.strip():
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
        severity=normalise(Kind.SEVERITY, _text(data.get("severity"))),
        category=_text(data.get("category")),
        status=normalise(Kind.ALERT_STATUS, _text(data.get("status"))),
        detection_source=_text(data.get("detectionSource")),
        service_source=_text(data.get("serviceSource")),
        mitre_techniques=[_text(t) for t in _list(data.get("mitreTechniques"))],
        first_activity=parse_time(_first(data, "firstActivity", "firstActivityDateTime")),
        last_activity=parse_time(_first(data, "lastActivity", "lastActivityDateTime")),
        devices=[d for d in devices if isinstance(d, dict)],
        entities=[e for e in entities if isinstance(e, dict)],
        raw=data,
    )


def parse_incident(data: Any, *, repair: bool = True) -> IncidentData:
    """One incident object (Defender or Graph shape), its text repaired (`repair_text`; not
    with `repair=False`, for text checked already). BadResponse when it lacks a numeric ID
    or a readable last-update time (without them it can be neither stored nor watermarked)
    or has an alert without an ID."""
    if not isinstance(data, dict):
        raise errors.BadResponse("An incident that is not a JSON object")
    data, repaired = repair_text(data) if repair else (data, False)
    raw_id = _first(data, "incidentId", "id")
    if raw_id is None:
        raise errors.BadResponse("An incident without incidentId")
    incident_id = _incident_id(raw_id)
    updated = parse_time(_first(data, "lastUpdateTime", "lastUpdateDateTime"))
    if updated is None:
        raise errors.BadResponse("An incident without a readable lastUpdateTime")
    created = parse_time(_first(data, "createdTime", "createdDateTime")) or updated
    tags = _list(data.get("tags")) or _list(data.get("customTags"))
    alerts = [parse_alert(a) for a in _list(data.get("alerts"))]
    return IncidentData(
        incident_id=incident_id,
        last_update_time=updated,
        created_time=created,
        name=_text(_first(data, "incidentName", "displayName")),
        severity=normalise(Kind.SEVERITY, _text(data.get("severity"))),
        status=normalise(Kind.STATUS, _text(data.get("status"))),
        classification=normalise(Kind.CLASSIFICATION, _text(data.get("classification"))),
        determination=normalise(Kind.DETERMINATION, _text(data.get("determination"))),
        assigned_to=_text(data.get("assignedTo")),
        tags=[_text(t) for t in tags],
        comments=[c for c in _list(data.get("comments")) if isinstance(c, dict)],
        redirect_incident_id=_redirect_id(data.get("redirectIncidentId")),
        incident_uri=_text(_first(data, "incidentUri", "incidentWebUrl")),
        alerts=alerts,
        raw={k: v for k, v in data.items() if k != "alerts"},
        text_repaired=repaired,
    )


def _redirect_id(value: Any) -> int | None:
    # Only a pointer to another incident (kept in raw): one we cannot read is no reason to
    # refuse the incident.
    number = _int(value)
    return number if number is not None and 0 <= number <= MAX_INCIDENT_ID else None


def parse_list_items(body: Any) -> tuple[list[IncidentData], list[ItemProblem], str | None]:
    """A list response → (incidents, the items that could not be parsed, nextLink or None).
    Only an answer without a `value` array is a BadResponse: one bad item fails itself."""
    if not isinstance(body, dict) or not isinstance(body.get("value"), list):
        raise errors.BadResponse("The incident list has no 'value' array")
    incidents: list[IncidentData] = []
    problems: list[ItemProblem] = []
    repair = not isinstance(body["value"], CheckedItems)
    for item in body["value"]:
        try:
            incidents.append(parse_incident(item, repair=repair))
        except Exception as exc:  # anything one hostile item does must stay with that item
            problems.append(ItemProblem.of(item, exc))
    next_link = body.get("@odata.nextLink")
    return incidents, problems, next_link if isinstance(next_link, str) and next_link else None


def parse_list(body: Any) -> tuple[list[IncidentData], str | None]:
    """A list response → (incidents, @odata.nextLink or None); BadResponse for any bad item
    (strict: for callers that have nowhere to put an item problem)."""
    incidents, problems, next_link = parse_list_items(body)
    if problems:
        raise errors.BadResponse(problems[0].error)
    return incidents, next_link


# The fields a PATCH may change (`DefenderClient.update_incident`).
UPDATABLE = ("status", "assignedTo", "classification", "determination", "tags", "comment")
