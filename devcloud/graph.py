"""Microsoft Graph security incidents (§7): `/v1.0/security/incidents`, the same incidents
as the Defender API, in Graph's shape (camelCase enums, string ids, `evidence`, nulls kept
as in Microsoft's examples)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import TYPE_CHECKING
from urllib.parse import quote

from . import defender
from .defender import ODataError, int_option, matches, parse_filter
from .generator import Incident
from .state import dumps
from .timefmt import format_ticks, parse_ticks
from .web import Request, Response, json_response

if TYPE_CHECKING:
    from .app import DevCloudApp
    from .state import Tenant

GRAPH = "https://graph.microsoft.com"
READ_ROLES = ("SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All")
WRITE_ROLES = ("SecurityIncident.ReadWrite.All",)
MAX_TOP = 50  # [3P] Graph answers 400 above 50
DEFAULT_TOP = 50  # UNCONFIRMED default page size; a guess
ODATA_JSON = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;"
    "charset=utf-8"
)


def camel(value: str | None) -> str | None:
    # Anything but a string (a raw payload's odd value) passes through for $filter to miss.
    return value[0].lower() + value[1:] if isinstance(value, str) and value else value


DETERMINATION = {
    "NotAvailable": "unknown",
    "Clean": "notMalicious",
    "NotMalicious": "notMalicious",
    "NoEnoughDataToValidate": "notEnoughDataToValidate",
    "InsufficientData": "notEnoughDataToValidate",
    "NotEnoughDataToValidate": "notEnoughDataToValidate",
    "CompromisedUser": "compromisedAccount",
    "ConfirmedUserActivity": "confirmedActivity",
}
GRAPH_DETERMINATIONS = [
    "unknown", "apt", "malware", "securityPersonnel", "securityTesting", "unwantedSoftware",
    "other", "multiStagedAttack", "compromisedAccount", "phishing", "maliciousUserActivity",
    "notMalicious", "notEnoughDataToValidate", "confirmedActivity", "lineOfBusinessApplication",
]  # fmt: skip
# Graph value -> the Defender value devcloud stores.
DETERMINATION_BACK = {
    "unknown": "NotAvailable",
    "notMalicious": "Clean",
    "notEnoughDataToValidate": "NoEnoughDataToValidate",
}
STATUSES = ["active", "resolved", "inProgress", "redirected"]
SEVERITIES = ["unknown", "informational", "low", "medium", "high"]
CLASSIFICATIONS = ["unknown", "falsePositive", "truePositive", "informationalExpectedActivity"]
SERVICE_SOURCE = {
    "MicrosoftDefenderATP": ("microsoftDefenderForEndpoint", "Microsoft Defender for Endpoint"),
    "MicrosoftCloudAppSecurity": (
        "microsoftDefenderForCloudApps",
        "Microsoft Defender for Cloud Apps",
    ),
    "OfficeATP": ("microsoftDefenderForOffice365", "Microsoft Defender for Office 365"),
    "MicrosoftDefenderForOffice365": (
        "microsoftDefenderForOffice365",
        "Microsoft Defender for Office 365",
    ),
    "AzureATP": ("microsoftDefenderForIdentity", "Microsoft Defender for Identity"),
    "AzureAdIdentityProtection": ("azureAdIdentityProtection", "Microsoft Entra ID Protection"),
    "Microsoft365Defender": ("microsoft365Defender", "Microsoft Defender XDR"),
}
DETECTION_SOURCE = {
    "WindowsDefenderAv": "antivirus",
    "WindowsDefenderAtp": "microsoftDefenderForEndpoint",
    "MCAS": "cloudAppSecurity",
    "OfficeATP": "microsoftDefenderForOffice365",
    "AzureATP": "microsoftDefenderForIdentity",
    "AzureAdIdentityProtection": "azureAdIdentityProtection",
    "Microsoft365Defender": "microsoft365Defender",
}


def _determination(value: str | None) -> str | None:
    if not isinstance(value, str):
        return value
    return DETERMINATION.get(value, camel(value))


def _web_url(incident_id: int, tid: str) -> str:
    return f"https://security.microsoft.com/incident2/{incident_id}/overview?tid={tid}"


def _account(entity: dict) -> dict:
    return {
        "accountName": entity.get("accountName"),
        "domainName": entity.get("domainName"),
        "userSid": entity.get("userSid"),
        "azureAdUserId": entity.get("aadUserId"),
        "userPrincipalName": entity.get("userPrincipalName"),
        "displayName": entity.get("mailboxDisplayName"),
        "activeDirectoryObjectGuid": None,
        "resourceAccessEvents": [],
    }


def _evidence(entity: dict, created: str, verdict: str) -> dict:
    kind = entity["entityType"]
    base = {
        "createdDateTime": created,
        "verdict": verdict,
        "remediationStatus": "none" if verdict == "suspicious" else "active",
        "remediationStatusDetails": None,
        "roles": [],
        "detailedRoles": [],
        "tags": [],
    }
    if kind == "User":
        return {"@odata.type": "#microsoft.graph.security.userEvidence", **base,
                "stream": None, "userAccount": _account(entity)}  # fmt: skip
    if kind == "Ip":
        return {"@odata.type": "#microsoft.graph.security.ipEvidence", **base,
                "ipAddress": entity.get("ipAddress"), "countryLetterCode": None, "stream": None,
                "location": None}  # fmt: skip
    if kind == "Url":
        return {"@odata.type": "#microsoft.graph.security.urlEvidence", **base,
                "url": entity.get("url")}  # fmt: skip
    file_details = {
        "sha1": entity.get("sha1"),
        "sha256": entity.get("sha256"),
        "md5": None,
        "sha256Ac": None,
        "fileName": entity.get("fileName"),
        "filePath": entity.get("filePath"),
        "filePublisher": None,
        "fileSize": None,
        "issuer": None,
        "signer": None,
    }
    if kind == "File":
        return {"@odata.type": "#microsoft.graph.security.fileEvidence", **base,
                "detectionStatus": "detected", "mdeDeviceId": entity.get("deviceId"),
                "fileDetails": file_details}  # fmt: skip
    if kind == "Process":
        return {"@odata.type": "#microsoft.graph.security.processEvidence", **base,
                "processId": entity.get("processId"),
                "parentProcessId": entity.get("parentProcessId"),
                "processCommandLine": entity.get("processCommandLine"),
                "processCreationDateTime": entity.get("processCreationTime"),
                "parentProcessCreationDateTime": entity.get("parentProcessCreationTime"),
                "detectionStatus": "detected", "mdeDeviceId": entity.get("deviceId"),
                "parentProcessImageFile": None, "imageFile": file_details,
                "userAccount": _account(entity)}  # fmt: skip
    if kind == "MailBox":
        return {"@odata.type": "#microsoft.graph.security.mailboxEvidence", **base,
                "displayName": entity.get("mailboxDisplayName"),
                "primaryAddress": entity.get("mailboxAddress"),
                "userAccount": _account(entity)}  # fmt: skip
    if kind == "MailMessage":
        return {"@odata.type": "#microsoft.graph.security.analyzedMessageEvidence", **base,
                "recipientEmailAddress": entity.get("recipient"),
                "subject": entity.get("subject"),
                "p1Sender": {"emailAddress": entity.get("sender"), "displayName": None,
                             "domainName": None},
                "deliveryAction": entity.get("deliveryAction"),
                "internetMessageId": None, "networkMessageId": str(uuid.uuid5(
                    uuid.NAMESPACE_URL, json.dumps(entity, sort_keys=True)))}  # fmt: skip
    if kind == "MailCluster":
        return {"@odata.type": "#microsoft.graph.security.mailClusterEvidence", **base,
                "clusterBy": entity.get("clusterBy"), "clusterByValue": None,
                "emailCount": None, "query": None, "urn": None}  # fmt: skip
    return {"@odata.type": "#microsoft.graph.security.alertEvidence", **base}


def _device_evidence(device: dict, created: str) -> dict:
    return {
        "@odata.type": "#microsoft.graph.security.deviceEvidence",
        "createdDateTime": created,
        "verdict": "suspicious",
        "remediationStatus": "active",
        "remediationStatusDetails": None,
        "roles": [],
        "detailedRoles": ["PrimaryDevice"],
        "tags": [],
        "firstSeenDateTime": device.get("firstSeen"),
        "mdeDeviceId": device.get("mdatpDeviceId"),
        "azureAdDeviceId": device.get("aadDeviceId"),
        "deviceDnsName": device.get("deviceDnsName"),
        "hostName": (device.get("deviceDnsName") or "").split(".")[0] or None,
        "ntDomain": None,
        "dnsDomain": None,
        "osPlatform": device.get("osPlatform"),
        "osBuild": device.get("osBuild"),
        "version": device.get("version"),
        "healthStatus": camel(device.get("healthStatus")),
        "riskScore": camel(device.get("riskScore")),
        "rbacGroupId": device.get("rbacGroupId"),
        "rbacGroupName": device.get("rbacGroupName"),
        "onboardingStatus": "onboarded",
        "defenderAvStatus": "unknown",
        "lastIpAddress": None,
        "lastExternalIpAddress": None,
        "ipInterfaces": [],
        "vmMetadata": None,
        "loggedOnUsers": [],
        "resourceAccessEvents": [],
    }


def _alert(alert: dict, tid: str, incident_id: int) -> dict:
    service, product = SERVICE_SOURCE.get(alert["serviceSource"], ("unknown", "Unknown"))
    created = alert["creationTime"]
    evidence_time = format_ticks(parse_ticks(created) + 10**6)
    verdict = "malicious" if alert.get("threatFamilyName") else "suspicious"
    return {
        "id": alert["alertId"],
        "providerAlertId": alert.get("providerAlertId"),
        "incidentId": str(incident_id),
        "status": camel(alert["status"]),
        "severity": camel(alert["severity"]),
        "classification": camel(alert.get("classification")),
        "determination": _determination(alert.get("determination")),
        "serviceSource": service,
        "detectionSource": DETECTION_SOURCE.get(alert["detectionSource"], "unknown"),
        "productName": product,
        "detectorId": alert.get("detectorId"),
        "tenantId": tid,
        "title": alert["title"],
        "description": alert.get("description"),
        "recommendedActions": None,
        "category": alert.get("category"),
        "assignedTo": alert.get("assignedTo"),
        "alertWebUrl": f"https://security.microsoft.com/alerts/{alert['alertId']}?tid={tid}",
        "incidentWebUrl": _web_url(incident_id, tid),
        "actorDisplayName": alert.get("actorName"),
        "threatDisplayName": alert.get("threatFamilyName"),
        "threatFamilyName": alert.get("threatFamilyName"),
        "mitreTechniques": list(alert.get("mitreTechniques") or []),
        "createdDateTime": created,
        "lastUpdateDateTime": alert.get("lastUpdatedTime"),
        "resolvedDateTime": alert.get("resolvedTime"),
        "firstActivityDateTime": alert.get("firstActivity"),
        "lastActivityDateTime": alert.get("lastActivity"),
        "systemTags": [],
        "alertPolicyId": None,
        "investigationState": camel(alert.get("investigationState")) or "unknown",
        "comments": [],
        "customDetails": {},
        "evidence": [_device_evidence(d, evidence_time) for d in alert.get("devices") or []]
        + [_evidence(e, evidence_time, verdict) for e in alert.get("entities") or []],
        "additionalData": {},
    }


def graph_incident(incident: Incident, tid: str, *, expand: bool) -> bytes:
    """The Graph JSON of one incident (cached until the incident changes); a raw payload is
    served exactly as given, whatever its shape."""
    if incident.raw is not None:
        return incident.raw
    key = "expanded" if expand else "plain"
    cached = incident.graph_cache.get(key)
    if cached is not None:
        return cached
    data, extra = incident.data, incident.extra
    redirect = data.get("redirectIncidentId")
    body = {
        "id": str(incident.incident_id),
        "tenantId": tid,
        "status": camel(data["status"]),
        "incidentWebUrl": _web_url(incident.incident_id, tid),
        "redirectIncidentId": str(redirect) if redirect is not None else None,
        "displayName": data["incidentName"],
        "createdDateTime": data["createdTime"],
        "lastUpdateDateTime": data["lastUpdateTime"],
        "assignedTo": data.get("assignedTo"),
        "classification": camel(data.get("classification")),
        "determination": _determination(data.get("determination")),
        "severity": camel(data["severity"]),
        "customTags": list(data.get("tags") or []),
        "systemTags": [],
        "description": extra.get("description"),
        "lastModifiedBy": extra.get("lastModifiedBy"),
        "resolvingComment": extra.get("resolvingComment"),
        "summary": extra.get("summary"),
        "priorityScore": {"High": 90, "Medium": 60, "Low": 30}.get(data["severity"], 10),
        "comments": [
            {
                "comment": c["comment"],
                "createdByDisplayName": c.get("createdBy"),
                "createdDateTime": c.get("createdTime"),
            }
            for c in data.get("comments") or []
        ],
    }
    if expand:
        body["alerts"] = [_alert(a, tid, incident.incident_id) for a in data.get("alerts") or []]
    encoded = dumps(body)
    incident.graph_cache[key] = encoded
    return encoded


# --- errors and auth ---------------------------------------------------------------------


def graph_error(req: Request, status: int, code: str, message: str, extra=None) -> Response:
    """Graph's error shape: {"error": {"code", "message", "innerError": {...}}} (§7.8)."""
    inner = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": str(uuid.uuid4()),
        "client-request-id": req.headers.get("client-request-id") or str(uuid.uuid4()),
    }
    if status == 429:
        inner |= {"code": "429", "message": "Please retry after", "status": "429"}
    return json_response(
        status, {"error": {"code": code, "message": message, "innerError": inner}}, extra
    )


def _guard(app: DevCloudApp, req: Request, roles: tuple[str, ...]):
    claims = defender.authenticate(app, req, "graph")
    if claims is None:
        return graph_error(
            req, 401, "InvalidAuthenticationToken", "Access token validation failure."
        )
    if not any(r in (claims.get("roles") or []) for r in roles):
        # UNCONFIRMED code (§7.8): Forbidden.
        return graph_error(
            req,
            403,
            "Forbidden",
            f"Missing application roles. API required roles: {','.join(roles)}.",
        )
    tenant = app.store.resolve_tenant(claims["tid"])
    throttled = app.store.throttle(tenant.tenant_id, f"{claims.get('appid', '')}|graph")
    if throttled:
        return graph_error(
            req,
            429,
            "TooManyRequests",
            "Please retry again later.",
            [("Retry-After", str(throttled[0]))],
        )
    return tenant, claims


# --- $filter -----------------------------------------------------------------------------


def _camel_field(name: str):
    return lambda incident: camel(incident.data.get(name))


GRAPH_FILTERS: dict = {
    "lastUpdateDateTime": ("time", lambda i: i.updated, None),
    "createdDateTime": ("time", lambda i: i.created, None),
    "status": ("enum", _camel_field("status"), STATUSES),
    "severity": ("enum", _camel_field("severity"), SEVERITIES),
    "classification": ("enum", _camel_field("classification"), CLASSIFICATIONS),
    "determination": (
        "enum",
        lambda i: _determination(i.data.get("determination")),
        GRAPH_DETERMINATIONS,
    ),
    "assignedTo": ("string", lambda i: i.data.get("assignedTo"), None),
}


def _expand(req: Request) -> bool:
    raw = req.q("$expand")
    if raw is None:
        return False
    if raw.strip() != "alerts":
        raise ODataError(f"Property '{raw}' on type 'microsoft.graph.security.incident' is not a "
                         "navigation property or complex property. Only navigation properties "
                         "can be expanded.")  # fmt: skip
    return True


def list_incidents(app: DevCloudApp, req: Request) -> Response:
    checked = _guard(app, req, READ_ROLES)
    if isinstance(checked, Response):
        return checked
    tenant, _claims = checked
    try:
        for key in req.query:
            if key.startswith("$") and key not in ("$filter", "$top", "$skip", "$expand", "$count"):
                raise ODataError(f"Query option '{key}' is not supported.")
        top = int_option(req, "$top", DEFAULT_TOP)
        if top > MAX_TOP:
            raise ODataError(
                f"The limit of '{MAX_TOP}' for Top query has been exceeded. The value from the "
                f"incoming request is '{top}'."
            )
        skip = int_option(req, "$skip", 0)
        expand = _expand(req)
        count = (req.q("$count") or "false").lower() == "true"
        raw_filter = req.q("$filter")
        predicates = parse_filter(raw_filter, GRAPH_FILTERS) if raw_filter else []
    except ODataError as exc:
        return graph_error(req, 400, "BadRequest", str(exc))
    base = req.base_url
    context = f"{base}/v1.0/$metadata#security/incidents" + ("(alerts())" if expand else "")
    with app.store.lock:
        ordered = tenant.sorted_incidents()
        if predicates:
            ordered = [i for i in ordered if matches(i, predicates)]
        page = ordered[skip : skip + top]
        more = skip + top < len(ordered) and top > 0
        items = [graph_incident(i, tenant.tenant_id, expand=expand) for i in page]
        total = len(ordered)
    head = {"@odata.context": context}
    if count:
        head["@odata.count"] = total
    parts = [dumps(head)[:-1], b',"value":[', b",".join(items), b"]"]
    if more:
        query = []
        if raw_filter:
            query.append("$filter=" + quote(raw_filter, safe=":'"))
        if expand:
            query.append("$expand=alerts")
        if count:
            query.append("$count=true")
        query += [f"$top={top}", f"$skip={skip + top}"]
        link = f"{base}/v1.0/security/incidents?{'&'.join(query)}"
        parts += [b',"@odata.nextLink":', dumps(link)]
    parts.append(b"}")
    return Response(200, b"".join(parts), [("Content-Type", ODATA_JSON)])


def _entity(req: Request, body: bytes, expand: bool) -> Response:
    context = f"{req.base_url}/v1.0/$metadata#security/incidents" + (
        "(alerts())/$entity" if expand else "/$entity"
    )
    head = b'{"@odata.context":' + dumps(context) + b","
    return Response(200, head + body[1:], [("Content-Type", ODATA_JSON)])


def _lookup(tenant: Tenant, raw: str) -> Incident | None:
    return tenant.lookup(raw)


def _not_found(req: Request, raw: str) -> Response:
    return graph_error(req, 404, "NotFound", f"Incident {raw} not found.")


def get_incident(app: DevCloudApp, req: Request, raw_id: str) -> Response:
    checked = _guard(app, req, READ_ROLES)
    if isinstance(checked, Response):
        return checked
    tenant, _claims = checked
    try:
        expand = _expand(req)
    except ODataError as exc:
        return graph_error(req, 400, "BadRequest", str(exc))
    with app.store.lock:
        incident = _lookup(tenant, raw_id)
        if incident is None:
            return _not_found(req, raw_id)
        body = graph_incident(incident, tenant.tenant_id, expand=expand)
    return _entity(req, body, expand)


def _enum(value, allowed: list[str], name: str) -> str:
    if isinstance(value, str):
        for candidate in allowed:
            if candidate.lower() == value.lower():
                return candidate
    raise ValueError(f"Invalid value '{value}' for property '{name}'.")


def _changes(body) -> dict:
    """Graph PATCH body → the Defender-side change (§7.7)."""
    if not isinstance(body, dict):
        raise ValueError("The request body must be a JSON object.")
    changes: dict = {}
    for key, value in body.items():
        if key == "@odata.type":
            continue
        if key == "status":
            changes["status"] = _pascal(_enum(value, STATUSES, key))
        elif key == "severity":
            changes["severity"] = _pascal(_enum(value, SEVERITIES[1:], key))
        elif key == "classification":
            changes["classification"] = _pascal(_enum(value, CLASSIFICATIONS, key))
        elif key == "determination":
            graph_value = _enum(value, GRAPH_DETERMINATIONS, key)
            changes["determination"] = DETERMINATION_BACK.get(graph_value, _pascal(graph_value))
        elif key == "customTags":
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise ValueError("'customTags' must be a list of strings.")
            changes["tags"] = value
        elif key in ("assignedTo", "description", "displayName", "resolvingComment", "summary"):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"'{key}' must be a string.")
            changes["incidentName" if key == "displayName" else key] = value
        else:
            raise ValueError(f"Property '{key}' cannot be updated.")
    return changes


def _pascal(value: str) -> str:
    return value[0].upper() + value[1:]


def update_incident(app: DevCloudApp, req: Request, raw_id: str) -> Response:
    checked = _guard(app, req, WRITE_ROLES)
    if isinstance(checked, Response):
        return checked
    tenant, claims = checked
    with app.store.lock:
        incident = tenant.writable(raw_id)  # a merged incident is 404 too
    if incident is None:
        return _not_found(req, raw_id)
    try:
        changes = _changes(req.json())
    except ValueError as exc:
        return graph_error(req, 400, "BadRequest", str(exc))
    if changes.get("incidentName") is None:
        changes.pop("incidentName", None)
    author = f"API-App:{claims.get('appid')}"
    app.store.update_incident(tenant, incident.incident_id, changes, author)
    with app.store.lock:
        body = graph_incident(incident, tenant.tenant_id, expand=False)
    return _entity(req, body, False)


def add_comment(app: DevCloudApp, req: Request, raw_id: str) -> Response:
    checked = _guard(app, req, WRITE_ROLES)
    if isinstance(checked, Response):
        return checked
    tenant, claims = checked
    with app.store.lock:
        incident = tenant.writable(raw_id)  # a merged incident is 404 too
    if incident is None:
        return _not_found(req, raw_id)
    try:
        body = req.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("comment"), str):
        return graph_error(req, 400, "BadRequest", "A 'comment' string is required.")
    author = f"API-App:{claims.get('appid')}"
    app.store.update_incident(tenant, incident.incident_id, {"comment": body["comment"]}, author)
    with app.store.lock:
        comments = json.loads(graph_incident(incident, tenant.tenant_id, expand=False))["comments"]
    # UNCONFIRMED return shape (§7.7): the comment collection.
    context = f"{req.base_url}/v1.0/$metadata#Collection(microsoft.graph.security.alertComment)"
    return json_response(200, {"@odata.context": context, "value": comments})
