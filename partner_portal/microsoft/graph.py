"""Microsoft Graph security incidents (`/security/incidents`), parsed into the same
dataclasses as the Defender API's, so that one incident looks the same from either source.

`defender.parse_incident` already reads Graph's field names; this module adds what differs:
enum values in camelCase (normalised by `vocabulary`), comments' field names, and alerts'
polymorphic `evidence`, mapped onto the Defender API's `devices` and `entities` (the pages
show those). Every alert keeps its evidence as received in `raw` (`incidents/_evidence.html`
shows verdicts and remediation from it).

Reference: https://learn.microsoft.com/en-us/graph/api/resources/security-incident
and security-alert (evidence types); docs/microsoft-protocols.md §7.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from partner_portal.microsoft import errors
from partner_portal.microsoft.defender import (
    AlertData,
    CheckedItems,
    IncidentData,
    parse_incident,
)
from partner_portal.microsoft.vocabulary import Kind, normalise

_ODATA_PREFIX = "#microsoft.graph.security."

# Graph evidence type → Defender entityType (the rest: the type without "Evidence").
ENTITY_TYPES = {
    "userEvidence": "User",
    "ipEvidence": "Ip",
    "urlEvidence": "Url",
    "fileEvidence": "File",
    "processEvidence": "Process",
    "mailboxEvidence": "MailBox",
    "analyzedMessageEvidence": "MailMessage",
    "mailClusterEvidence": "MailCluster",
    "registryKeyEvidence": "RegistryKey",
    "registryValueEvidence": "RegistryValue",
    "cloudApplicationEvidence": "CloudApplication",
    "securityGroupEvidence": "SecurityGroup",
}


def evidence_type(item: dict[str, Any]) -> str:
    """`deviceEvidence`, `userEvidence`… ('' when the item does not say)."""
    odata = item.get("@odata.type")
    if not isinstance(odata, str):
        return ""
    return odata.removeprefix(_ODATA_PREFIX).lstrip("#")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    # Graph sends every property, null or not; the pages list only what is known.
    return {k: v for k, v in data.items() if v not in (None, "", [], {})}


def _account(account: Any) -> dict[str, Any]:
    account = _dict(account)
    return {
        "accountName": account.get("accountName"),
        "domainName": account.get("domainName"),
        "userSid": account.get("userSid"),
        "aadUserId": account.get("azureAdUserId"),
        "userPrincipalName": account.get("userPrincipalName"),
    }


def _file(details: Any) -> dict[str, Any]:
    details = _dict(details)
    return {
        "fileName": details.get("fileName"),
        "filePath": details.get("filePath"),
        "sha1": details.get("sha1"),
        "sha256": details.get("sha256"),
    }


def evidence_device(item: dict[str, Any]) -> dict[str, Any]:
    """A `deviceEvidence` as a Defender API device."""
    return _clean(
        {
            "mdatpDeviceId": item.get("mdeDeviceId"),
            "aadDeviceId": item.get("azureAdDeviceId"),
            "deviceDnsName": item.get("deviceDnsName") or item.get("hostName"),
            "osPlatform": item.get("osPlatform"),
            "osBuild": item.get("osBuild"),
            "version": item.get("version"),
            "healthStatus": item.get("healthStatus"),
            "riskScore": item.get("riskScore"),
            "rbacGroupId": item.get("rbacGroupId"),
            "rbacGroupName": item.get("rbacGroupName"),
            "firstSeen": item.get("firstSeenDateTime"),
        }
    )


def evidence_entity(item: dict[str, Any]) -> dict[str, Any]:
    """Any other evidence as a Defender API entity (`entityType` + its usual fields)."""
    kind = evidence_type(item)
    entity_type = (
        ENTITY_TYPES.get(kind)
        or (kind.removesuffix("Evidence")[:1].upper() + kind.removesuffix("Evidence")[1:])
        or "Other"
    )
    fields: dict[str, Any] = {}
    if kind == "userEvidence":
        fields = _account(item.get("userAccount"))
    elif kind == "ipEvidence":
        fields = {
            "ipAddress": item.get("ipAddress"),
            "countryLetterCode": item.get("countryLetterCode"),
        }
    elif kind == "urlEvidence":
        fields = {"url": item.get("url")}
    elif kind == "fileEvidence":
        fields = {**_file(item.get("fileDetails")), "deviceId": item.get("mdeDeviceId")}
    elif kind == "processEvidence":
        fields = {
            **_file(item.get("imageFile")),
            "processId": item.get("processId"),
            "parentProcessId": item.get("parentProcessId"),
            "processCommandLine": item.get("processCommandLine"),
            "processCreationTime": item.get("processCreationDateTime"),
            "parentProcessCreationTime": item.get("parentProcessCreationDateTime"),
            "deviceId": item.get("mdeDeviceId"),
            **_account(item.get("userAccount")),
        }
    elif kind == "mailboxEvidence":
        fields = {
            "mailboxDisplayName": item.get("displayName"),
            "mailboxAddress": item.get("primaryAddress"),
            **_account(item.get("userAccount")),
        }
    elif kind == "analyzedMessageEvidence":
        fields = {
            "recipient": item.get("recipientEmailAddress"),
            "subject": item.get("subject"),
            "sender": _dict(item.get("p1Sender")).get("emailAddress"),
            "deliveryAction": item.get("deliveryAction"),
        }
    elif kind == "mailClusterEvidence":
        fields = {"clusterBy": item.get("clusterBy")}
    else:
        # Unknown or rarer types: their plain (non-nested) properties.
        skip = {"@odata.type", "createdDateTime", "verdict", "remediationStatus"}
        fields = {
            k: v
            for k, v in item.items()
            if k not in skip and isinstance(v, str | int | float) and not isinstance(v, bool)
        }
    return {"entityType": entity_type, **_clean(fields)}


def split_evidence(evidence: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Graph's `evidence` list → (devices, entities) in the Defender API's shape. Items that
    are not objects are skipped; one odd item never costs the alert."""
    devices: list[dict[str, Any]] = []
    entities: list[dict[str, Any]] = []
    for item in evidence if isinstance(evidence, list) else []:
        if not isinstance(item, dict):
            continue
        if evidence_type(item) == "deviceEvidence":
            devices.append(evidence_device(item))
        else:
            entities.append(evidence_entity(item))
    return devices, entities


def _graph_alert(alert: AlertData) -> AlertData:
    devices, entities = split_evidence(alert.raw.get("evidence"))
    return dataclasses.replace(
        alert,
        severity=normalise(Kind.SEVERITY, alert.severity),
        status=normalise(Kind.ALERT_STATUS, alert.status),
        devices=devices,
        entities=entities,
    )


def _comment(comment: dict[str, Any]) -> dict[str, Any]:
    # Defender's names (the pages and the CSV read those); the CSDL's, else the docs' older.
    return {
        "comment": comment.get("comment"),
        "createdBy": comment.get("createdByDisplayName") or comment.get("createdBy"),
        "createdTime": comment.get("createdDateTime") or comment.get("createdTime"),
    }


def parse_graph_incident(data: Any, *, repair: bool = True) -> IncidentData:
    """One Graph incident (with its alerts when expanded), in the Defender vocabulary."""
    incident = parse_incident(data, repair=repair)
    return dataclasses.replace(
        incident,
        severity=normalise(Kind.SEVERITY, incident.severity),
        status=normalise(Kind.STATUS, incident.status),
        classification=normalise(Kind.CLASSIFICATION, incident.classification),
        determination=normalise(Kind.DETERMINATION, incident.determination),
        comments=[_comment(c) for c in incident.comments],
        alerts=[_graph_alert(a) for a in incident.alerts],
    )


def parse_graph_list(body: Any) -> tuple[list[IncidentData], str | None]:
    """A Graph list response → (incidents, @odata.nextLink or None)."""
    if not isinstance(body, dict) or not isinstance(body.get("value"), list):
        raise errors.BadResponse("The incident list has no 'value' array")
    next_link = body.get("@odata.nextLink")
    repair = not isinstance(body["value"], CheckedItems)
    return [parse_graph_incident(i, repair=repair) for i in body["value"]], next_link or None


_LABEL_FIELDS = (
    "deviceDnsName", "userPrincipalName", "accountName", "ipAddress", "url",
    "processCommandLine", "fileName", "mailboxAddress", "subject", "clusterBy",
)  # fmt: skip


def describe_evidence(item: Any) -> dict[str, str] | None:
    """One evidence item for people: its kind, what it names, Microsoft's verdict and the
    remediation status. None for an item that is not an object."""
    if not isinstance(item, dict):
        return None
    if evidence_type(item) == "deviceEvidence":
        kind, fields = "Device", evidence_device(item)
    else:
        fields = evidence_entity(item)
        kind = str(fields.pop("entityType"))
    name = next((str(fields[f]) for f in _LABEL_FIELDS if fields.get(f)), "")
    if not name and fields:
        name = str(next(iter(fields.values())))
    return {
        "kind": kind,
        "name": name[:300],
        "verdict": str(item.get("verdict") or ""),
        "remediation": str(item.get("remediationStatus") or ""),
    }
