"""Microsoft's incident vocabulary, once: severity, status, classification, determination.

Defender's API spells values in PascalCase (`InProgress`, `TruePositive`), Graph's security API
in camelCase (`inProgress`, `truePositive`), and the two disagree on some names (Defender
`Clean` is Graph `notMalicious`). `normalise` maps every known spelling, case-insensitively, to
one canonical value (Defender's spelling, which the database has always held); a value we don't
know is kept exactly as received, so a future `Critical` is shown as Microsoft sent it and is
never mistaken for an open or closed state. `label` gives the words people read.

Reference: docs/microsoft-protocols.md sections 6.4 (Defender) and 7.5 (Graph's CSDL).
"""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    SEVERITY = "severity"
    STATUS = "status"
    CLASSIFICATION = "classification"
    DETERMINATION = "determination"
    ALERT_STATUS = "alert_status"


# canonical value -> label, in display order.
LABELS: dict[Kind, dict[str, str]] = {
    Kind.SEVERITY: {
        "High": "High",
        "Medium": "Medium",
        "Low": "Low",
        "Informational": "Informational",
        "UnSpecified": "Unspecified",
    },
    Kind.STATUS: {
        "Active": "Active",
        "InProgress": "In progress",
        "AwaitingAction": "Awaiting action",
        "Resolved": "Resolved",
        "Redirected": "Merged",
    },
    Kind.CLASSIFICATION: {
        "Unknown": "Not classified",
        "TruePositive": "True positive",
        "InformationalExpectedActivity": "Informational, expected activity",
        "FalsePositive": "False positive",
    },
    Kind.DETERMINATION: {
        "NotAvailable": "Not available",
        "MultiStagedAttack": "Multi-staged attack",
        "MaliciousUserActivity": "Malicious user activity",
        "CompromisedAccount": "Compromised account",
        "Malware": "Malware",
        "Phishing": "Phishing",
        "UnwantedSoftware": "Unwanted software",
        "SecurityTesting": "Security testing",
        "LineOfBusinessApplication": "Line-of-business application",
        "ConfirmedActivity": "Confirmed activity",
        "Clean": "Not malicious",
        "NoEnoughDataToValidate": "Not enough data to validate",
        "Other": "Other",
        "Apt": "Advanced persistent threat",
        "SecurityPersonnel": "Security personnel",
    },
    Kind.ALERT_STATUS: {
        "New": "New",
        "InProgress": "In progress",
        "Resolved": "Resolved",
        "Unknown": "Unknown",
    },
}

# Other spellings of the same values (matched case-insensitively, like the canonical ones).
ALIASES: dict[Kind, dict[str, str]] = {
    Kind.SEVERITY: {"unknown": "UnSpecified", "unspecified": "UnSpecified"},
    Kind.STATUS: {},
    Kind.CLASSIFICATION: {"informational, expected activity": "InformationalExpectedActivity"},
    Kind.DETERMINATION: {
        "unknown": "NotAvailable",
        "compromiseduser": "CompromisedAccount",
        "confirmeduseractivity": "ConfirmedActivity",
        "notmalicious": "Clean",
        "insufficientdata": "NoEnoughDataToValidate",
        "notenoughdatatovalidate": "NoEnoughDataToValidate",
    },
    Kind.ALERT_STATUS: {},
}

_LOOKUP: dict[Kind, dict[str, str]] = {
    kind: {value.lower(): value for value in LABELS[kind]} | ALIASES[kind] for kind in Kind
}

# 4 for High … 0 for UnSpecified: the order of LABELS, highest first.
SEVERITY_RANK = {value: rank for rank, value in enumerate(reversed(LABELS[Kind.SEVERITY]))}
OPEN_STATUSES = frozenset({"Active", "InProgress", "AwaitingAction"})
CLOSED_STATUSES = frozenset({"Resolved", "Redirected"})

# Which determinations go with which classification (Defender's PATCH documentation).
DETERMINATIONS_BY_CLASSIFICATION: dict[str, tuple[str, ...]] = {
    "Unknown": ("NotAvailable",),
    "TruePositive": (
        "MultiStagedAttack",
        "MaliciousUserActivity",
        "CompromisedAccount",
        "Malware",
        "Phishing",
        "UnwantedSoftware",
        "Other",
    ),
    "InformationalExpectedActivity": (
        "SecurityTesting",
        "LineOfBusinessApplication",
        "ConfirmedActivity",
        "Other",
    ),
    "FalsePositive": ("Clean", "NoEnoughDataToValidate", "Other"),
}

# Canonical values whose Graph name is not just the camelCase form.
_GRAPH_NAMES: dict[Kind, dict[str, str]] = {
    Kind.SEVERITY: {"UnSpecified": "unknown"},
    Kind.DETERMINATION: {
        "NotAvailable": "unknown",
        "Clean": "notMalicious",
        "NoEnoughDataToValidate": "notEnoughDataToValidate",
        "Apt": "apt",
    },
}


# Microsoft's values are single words; an unknown one longer than this is kept to this many
# characters (the incident's raw JSON keeps it whole): indexed with others in one btree row
# (at most 2,704 bytes), a whole hostile value would keep its incident out of the database.
MAX_VALUE = 200


def normalise(kind: Kind, value: object) -> str:
    """The canonical spelling of a known value; anything else as received ("" for none),
    cut to MAX_VALUE characters (the last one "…") when longer."""
    if not isinstance(value, str):
        return ""
    known = _LOOKUP[kind].get(value.strip().lower())
    if known is not None:
        return known
    return value if len(value) <= MAX_VALUE else value[: MAX_VALUE - 1] + "…"


def is_known(kind: Kind, value: str) -> bool:
    return value in LABELS[kind]


def label(kind: Kind, value: str) -> str:
    """Words for a stored value; an unknown one is shown as Microsoft sent it."""
    return LABELS[kind].get(normalise(kind, value), value)


def choices(kind: Kind) -> list[tuple[str, str]]:
    return list(LABELS[kind].items())


def severity_rank(severity: str) -> int:
    """0 for unspecified and unknown values … 4 for high."""
    return SEVERITY_RANK.get(normalise(Kind.SEVERITY, severity), 0)


def is_open(status: str) -> bool | None:
    """True or False for a known status; None for one we don't know."""
    status = normalise(Kind.STATUS, status)
    if status in OPEN_STATUSES:
        return True
    if status in CLOSED_STATUSES:
        return False
    return None


def is_valid_pair(classification: str, determination: str) -> bool:
    allowed = DETERMINATIONS_BY_CLASSIFICATION.get(
        normalise(Kind.CLASSIFICATION, classification), ()
    )
    return normalise(Kind.DETERMINATION, determination) in allowed


def graph_value(kind: Kind, value: str) -> str:
    """The spelling Graph's security API expects for a canonical value (camelCase)."""
    value = normalise(kind, value)
    special = _GRAPH_NAMES.get(kind, {})
    if value in special:
        return special[value]
    return value[:1].lower() + value[1:]
