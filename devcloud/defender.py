"""The Microsoft 365 Defender incidents API (§6): list with OData, get, PATCH; Bearer checks;
per (tenant, app) rate limits."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from typing import TYPE_CHECKING
from urllib.parse import quote

import jwt

from . import clouds
from .generator import CLASSIFICATIONS, DETERMINATION_ALIASES, DETERMINATIONS
from .state import incident_json
from .timefmt import parse_ticks
from .web import JSON, Request, Response, json_response

if TYPE_CHECKING:
    from .app import DevCloudApp
    from .state import Tenant

AUDIENCES = ("https://api.security.microsoft.com", "https://api.securitycenter.microsoft.com")
READ_ROLES = ("Incident.Read.All", "Incident.ReadWrite.All")
WRITE_ROLES = ("Incident.ReadWrite.All",)
ODATA_JSON = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"
MAX_TOP = 100
DEFAULT_TOP = 100  # UNCONFIRMED default page size; a guess
PATCH_STATUSES = ("Active", "InProgress", "Resolved", "Redirected")
FILTER_STATUSES = ("Active", "InProgress", "Resolved", "Redirected")


def api_error(status: int, code: str, message: str, extra: list | None = None) -> Response:
    """The Defender error body: {"error": {"code", "message", "target"}} (§6.8)."""
    return json_response(
        status,
        {"error": {"code": code, "message": message, "target": str(uuid.uuid4())}},
        [("OData-Version", "4.0"), *(extra or [])],
    )


def unauthorized() -> Response:
    return api_error(401, "Unauthorized", "Invalid Authorization payload.")


def too_many(retry_after: int, limit: int, window: str) -> Response:
    period = "00:01:00" if window == "minute" else "01:00:00"
    return api_error(
        429,
        "TooManyRequests",
        f"API calls quota exceeded! Maximum allowed {limit} per {period} for the key "
        f"Destination+TenantID+AppID. You can send requests again in {retry_after} seconds.",
        [("Retry-After", str(retry_after))],
    )


def unverified_tid(app: DevCloudApp, req: Request) -> str | None:
    """The tenant a Bearer token claims to be for (attribution only: log and faults)."""
    auth = req.headers.get("Authorization") or ""
    if auth[:7].lower() != "bearer ":
        return None
    token = auth[7:].strip()
    claims = app.token_cache.get(token)
    if claims is None:
        try:
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError):
            return None
    tid = claims.get("tid") if isinstance(claims, dict) else None
    return tid if isinstance(tid, str) else None


def authenticate(app: DevCloudApp, req: Request, api: str = "defender") -> dict | None:
    """The verified claims of a Bearer token for this cloud's `api` ("defender" or "graph"),
    or None (→ 401): a token another cloud issued, or for another API, is refused."""
    cloud = clouds.of(req)
    audiences = cloud.graph if api == "graph" else cloud.defender
    auth = req.headers.get("Authorization") or ""
    if auth[:7].lower() != "bearer ":
        return None
    token = auth[7:].strip()
    claims = app.token_cache.get(token)
    if claims is None:
        try:
            claims = jwt.decode(
                token,
                app.pki.signing.private_key.public_key(),
                algorithms=["RS256"],
                options={"require": ["exp", "iat", "tid", "iss", "aud"], "verify_aud": False},
                # The API runs on Microsoft's clock, as Entra does (limits["clock_offset"]).
                leeway=abs(app.store.limits.get("clock_offset", 0)),
            )
        except jwt.PyJWTError:
            return None
        if not isinstance(claims.get("tid"), str):
            return None
        if len(app.token_cache) > 20000:
            app.token_cache.clear()
        app.token_cache[token] = claims
    elif claims["exp"] <= time.time() + app.store.limits.get("clock_offset", 0):
        return None
    if claims["aud"] not in audiences or claims.get("iss") != cloud.issuer(claims["tid"]):
        return None
    if app.store.resolve_tenant(claims["tid"]) is None:
        return None
    return claims


def guard(app: DevCloudApp, req: Request, roles: tuple[str, ...]) -> tuple[Tenant, dict] | Response:
    claims = authenticate(app, req)
    if claims is None:
        return unauthorized()
    granted = claims.get("roles") or []
    if not any(r in granted for r in roles):
        needed = ", ".join(roles[::-1]) if len(roles) > 1 else roles[0]
        return api_error(
            403,
            "Forbidden",
            f"The application does not have any of the required application permissions "
            f"({needed}) to access the resource.",
        )
    tenant = app.store.resolve_tenant(claims["tid"])
    throttled = app.store.throttle(tenant.tenant_id, claims.get("appid", ""))
    if throttled:
        retry_after, window = throttled
        limit = app.store.limits["per_minute" if window == "minute" else "per_hour"]
        return too_many(retry_after, limit, window)
    return tenant, claims


# --- $filter ---------------------------------------------------------------------------------

_CLAUSE = re.compile(r"^\s*(\w+)\s+(eq|ne|ge|gt|le|lt)\s+(.+?)\s*$")
_AND = re.compile(r"\s+and\s+")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})$")
OPS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "ge": lambda a, b: a is not None and a >= b,
    "gt": lambda a, b: a is not None and a > b,
    "le": lambda a, b: a is not None and a <= b,
    "lt": lambda a, b: a is not None and a < b,
}


class ODataError(Exception):
    pass


def _string_literal(raw: str) -> str | None:
    if raw == "null":
        return None
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        inner = raw[1:-1]
        if re.search(r"(?<!')'(?!')", inner.replace("''", "")):
            raise ODataError(f"Syntax error in string literal {raw}.")
        return inner.replace("''", "'")
    raise ODataError(
        f"A binary operator with incompatible types was detected. Found operand {raw}."
    )


def _updated(incident):
    return incident.updated


def _created(incident):
    return incident.created


def _field(name: str):
    return lambda incident: incident.data.get(name)


# Defender documents exactly these filterable properties (§6.3).
DEFENDER_FILTERS: dict = {
    "lastUpdateTime": ("time", _updated, None),
    "createdTime": ("time", _created, None),
    "status": ("enum", _field("status"), FILTER_STATUSES),
    "assignedTo": ("string", _field("assignedTo"), None),
}


def parse_filter(text: str, spec: dict | None = None) -> list:
    """`$filter` as Defender documents it: lastUpdateTime / createdTime (unquoted date-times
    with up to 7 fractional digits) with eq/ge/gt/le/lt, `status eq '…'`,
    `assignedTo eq '…'`, joined by `and`. Anything else is an ODataError.

    `spec` maps property → (kind, getter, allowed enum values); predicates are
    (getter, op, value)."""
    spec = DEFENDER_FILTERS if spec is None else spec
    if re.search(r"[()]|\s(or|not)\s", text):
        raise ODataError(f"The query specified in the URI is not valid. '{text}' is not supported.")
    predicates = []
    for clause in _AND.split(text.strip()):
        m = _CLAUSE.match(clause)
        if not m:
            raise ODataError(f"Syntax error at '{clause}'.")
        prop, op, raw = m.groups()
        if prop not in spec:
            raise ODataError(
                f"Could not find a property named '{prop}' that can be filtered on. Supported: "
                f"{', '.join(spec)}."
            )
        kind, getter, allowed = spec[prop]
        if kind == "time":
            if op == "ne":
                raise ODataError(f"Operator '{op}' is not supported for {prop}.")
            if not _DATETIME.match(raw):
                raise ODataError(
                    f"A binary operator with incompatible types was detected. Found operand "
                    f"types 'Edm.DateTimeOffset' and '{raw}' for operator kind '{op}'."
                )
            try:
                value = parse_ticks(raw)
            except ValueError:
                raise ODataError(f"The DateTimeOffset text '{raw}' is not valid.") from None
            predicates.append((getter, OPS[op], value))
            continue
        if op != "eq":
            raise ODataError(f"Operator '{op}' is not supported for {prop}.")
        value = _string_literal(raw)
        if kind == "enum":
            match = next((s for s in allowed if value and s.lower() == value.lower()), None)
            if match is None:
                raise ODataError(f"The string '{value}' is not a valid enumeration type constant.")
            value = match
        predicates.append((getter, OPS["eq"], value))
    return predicates


def matches(incident, predicates) -> bool:
    return all(op(getter(incident), value) for getter, op, value in predicates)


def int_option(req: Request, name: str, default: int) -> int:
    raw = req.q(name)
    if raw is None:
        return default
    if not re.fullmatch(r"\d{1,9}", raw.strip()):
        raise ODataError(f"Invalid value '{raw}' for {name} query option found.")
    return int(raw)


def list_incidents(app: DevCloudApp, req: Request) -> Response:
    checked = guard(app, req, READ_ROLES)
    if isinstance(checked, Response):
        return checked
    tenant, _claims = checked
    try:
        for key in req.query:
            if key.startswith("$") and key not in ("$filter", "$top", "$skip"):
                raise ODataError(f"Query option '{key}' is not supported.")
        top = int_option(req, "$top", DEFAULT_TOP)
        if top > MAX_TOP:
            raise ODataError(
                f"The limit of '{MAX_TOP}' for Top query has been exceeded. The value from the "
                f"incoming request is '{top}'."
            )
        skip = int_option(req, "$skip", 0)
        raw_filter = req.q("$filter")
        predicates = parse_filter(raw_filter) if raw_filter else []
    except ODataError as exc:
        return api_error(400, "ODataError", f"Invalid OData URI query: {exc}")
    base = req.base_url
    with app.store.lock:
        ordered = tenant.sorted_incidents()
        if predicates:
            ordered = [i for i in ordered if matches(i, predicates)]
        page = ordered[skip : skip + top]
        more = skip + top < len(ordered) and top > 0
        items = []
        for incident in page:
            items += (incident_json(incident), b",")
        if items:
            items.pop()
    parts = [b'{"@odata.context":"', base.encode(), b'/api/$metadata#Incidents","value":[']
    parts += items
    parts.append(b"]")
    if more:
        query = []
        if raw_filter:
            query.append("$filter=" + quote(raw_filter, safe=":'"))
        query.append(f"$top={top}")
        query.append(f"$skip={skip + top}")
        link = f"{base}/api/incidents?{'&'.join(query)}"
        parts += [b',"@odata.nextLink":"', link.encode(), b'"']
    parts.append(b"}")
    return Response(200, b"".join(parts), [("Content-Type", ODATA_JSON), ("OData-Version", "4.0")])


def _entity(req: Request, body: bytes) -> Response:
    head = b'{"@odata.context":"' + req.base_url.encode() + b'/api/$metadata#Incidents/$entity",'
    return Response(200, head + body[1:], [("Content-Type", ODATA_JSON), ("OData-Version", "4.0")])


def _not_found(raw: str) -> Response:
    return api_error(404, "NotFound", f"Incident {raw} was not found.")


def get_incident(app: DevCloudApp, req: Request, raw_id: str) -> Response:
    checked = guard(app, req, READ_ROLES)
    if isinstance(checked, Response):
        return checked
    tenant, _claims = checked
    with app.store.lock:
        incident = tenant.lookup(raw_id)
        if incident is None:
            return _not_found(raw_id)
        body = incident_json(incident)
    return _entity(req, body)


def _enum(value, allowed, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"'{name}' must be a string.")
    for candidate in allowed:
        if candidate.lower() == value.lower():
            return candidate
    raise ValueError(f"The value '{value}' is not valid for '{name}'.")


def validate_patch(body) -> dict:
    if not isinstance(body, dict):
        raise ValueError("The request body must be a JSON object.")
    changes: dict = {}
    for key, value in body.items():
        if key == "status":
            changes[key] = _enum(value, PATCH_STATUSES, key)
        elif key == "classification":
            changes[key] = _enum(value, CLASSIFICATIONS, key)
        elif key == "determination":
            changes[key] = _enum(value, DETERMINATIONS + DETERMINATION_ALIASES, key)
        elif key == "assignedTo":
            if value is not None and not isinstance(value, str):
                raise ValueError("'assignedTo' must be a string.")
            changes[key] = value
        elif key == "tags":
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise ValueError("'tags' must be a list of strings.")
            changes[key] = value
        elif key == "comment":
            if not isinstance(value, str):
                raise ValueError("'comment' must be a string.")
            changes[key] = value
        else:
            raise ValueError(f"The property '{key}' cannot be updated.")
    return changes


# Which determinations go with which classification (Microsoft's classify-incidents page).
VALID_PAIRS = {
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


PAIR_ALIASES = {
    "CompromisedUser": "CompromisedAccount",
    "ConfirmedUserActivity": "ConfirmedActivity",
    "InsufficientData": "NoEnoughDataToValidate",
    "NotEnoughDataToValidate": "NoEnoughDataToValidate",
    "NotMalicious": "Clean",
}


def check_pair(changes: dict, current: dict) -> None:
    """A determination must belong to the classification it ends up with."""
    if "classification" not in changes and "determination" not in changes:
        return
    classification = changes.get("classification", current.get("classification"))
    determination = changes.get("determination", current.get("determination"))
    if "determination" not in changes and "classification" in changes:
        return  # a new classification alone: Microsoft resets the determination
    allowed = VALID_PAIRS.get(classification or "", ())
    if PAIR_ALIASES.get(determination, determination) not in allowed:
        raise ValueError(
            f"The determination '{determination}' is not valid for the classification "
            f"'{classification}'."
        )


def update_incident(app: DevCloudApp, req: Request, raw_id: str) -> Response:
    checked = guard(app, req, WRITE_ROLES)
    if isinstance(checked, Response):
        return checked
    tenant, claims = checked
    with app.store.lock:
        incident = tenant.writable(raw_id)  # a merged incident is 404 too
    if incident is None:
        return _not_found(raw_id)
    try:
        changes = validate_patch(req.json())
        with app.store.lock:
            check_pair(changes, incident.data)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        return api_error(400, "InvalidRequestBody", f"Request body is invalid: {exc}")
    # Guessed: comments added by an app are attributed to "API-App:<appid>".
    author = f"API-App:{claims.get('appid')}"
    body = app.store.update_incident(tenant, incident.incident_id, changes, author)
    return _entity(req, body)


__all__ = ["JSON", "list_incidents", "get_incident", "update_incident", "unverified_tid"]
