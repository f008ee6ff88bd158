"""Everything devcloud knows, in memory, behind one lock: tenants, apps, consent, incidents,
the request log, injected faults and rate-limit windows."""

from __future__ import annotations

import collections
import json
import math
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import unquote

from .generator import Generator, Incident
from .pki import cert_thumbprints
from .timefmt import (
    TICKS_PER_SECOND,
    centiseconds_up,
    format_ticks,
    full_ticks,
    now_ticks,
    parse_ticks,
)

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DEFAULT_LIMITS = {"per_minute": 50, "per_hour": 1500, "token_lifetime": 3599, "code_lifetime": 600}
# Seconds Microsoft's clock is ahead of (or, negative, behind) the real one: stamped into the
# tokens Entra issues (iat, nbf, exp), the lastUpdateTime of changes, and every answer's
# Date header, for clock-skew tests (set it again to step the clock).
DEFAULT_LIMITS["clock_offset"] = 0
CONSENT_STATES = ("consented", "no_roles", "disabled", "none")
FAULT_KINDS = ("status", "latency", "reset", "hang", "truncate", "malformed", "evolve")
FAULT_ENDPOINTS = ("token", "discovery", "jwks", "consent", "authorize", "list_incidents")
FAULT_ENDPOINTS += ("get_incident",)
FAULT_ENDPOINTS += ("update_incident", "graph_list_incidents", "graph_get_incident")
FAULT_ENDPOINTS += ("graph_update_incident", "graph_add_comment", "*")
MAX_LOG = 100_000  # entries kept; the counts are exact regardless


class ControlError(Exception):
    """A control-API request that cannot be done (HTTP status + message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def dumps(obj: object) -> bytes:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (from a raw payload) has no UTF-8 form: escape it as JSON does.
        return json.dumps(obj, separators=(",", ":")).encode("ascii")


@dataclass
class Secret:
    value: str
    expires_at: float | None  # epoch seconds; None = never

    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= time.time()


@dataclass
class App:
    client_id: str
    display_name: str
    secrets: list[Secret]
    certificates: list[dict]  # {"pem", "x5t", "x5t#S256", "public_key"}
    redirect_uris: list[str]
    required_permissions: list[str]

    def as_dict(self) -> dict:
        return {
            "client_id": self.client_id,
            "display_name": self.display_name,
            # Secret values are never echoed back: only a hint, as Entra shows.
            "secrets": [
                {
                    "hint": s.value[:3],
                    "expires_at": None
                    if s.expires_at is None
                    else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s.expires_at)),
                    "expired": s.expired(),
                }
                for s in self.secrets
            ],
            "certificates": [
                {"x5t": c["x5t"], "x5t#S256": c["x5t#S256"]} for c in self.certificates
            ],
            "redirect_uris": list(self.redirect_uris),
            "required_permissions": list(self.required_permissions),
        }


@dataclass
class Consent:
    state: str = "none"
    roles: list[str] = field(default_factory=list)
    sp_id: str = ""


@dataclass
class Tenant:
    tenant_id: str
    domain: str
    display_name: str
    no_sp_error: str
    seed: int
    generator: Generator
    blocked: bool = False
    # The Microsoft cloud it lives in (devcloud/clouds.py): its login host and APIs.
    cloud: str = "commercial"
    incidents: dict[int, Incident] = field(default_factory=dict)
    next_id: int = 0
    order: list[Incident] | None = None  # newest first; None = must re-sort
    noid: int = 0  # raw payloads stored without any ID

    def as_dict(self) -> dict:
        return {
            "tenant_id": self.tenant_id,
            "domain": self.domain,
            "display_name": self.display_name,
            "no_sp_error": self.no_sp_error,
            "blocked": self.blocked,
            "cloud": self.cloud,
            "incident_count": len(self.incidents),
        }

    def sorted_incidents(self) -> list[Incident]:
        if self.order is None:
            self.order = sorted(self.incidents.values(), key=_newest_first, reverse=True)
        return self.order

    def writable(self, raw_id: str) -> Incident | None:
        """The incident a PATCH (or a Graph comment) may change: a merged one answers 404
        like a deleted one (guessed: Microsoft documents 404 for both, and clients follow
        `redirectIncidentId`, which GET and the list still show)."""
        incident = self.lookup(raw_id)
        if incident is None or incident.data.get("redirectIncidentId") is not None:
            return None
        return incident

    def lookup(self, raw_id: str) -> Incident | None:
        """The incident a URL segment names: a numeric ID, or the ID text of a raw payload
        (string, huge or odd IDs)."""
        text = unquote(raw_id)
        if re.fullmatch(r"-?\d{1,4000}", text):
            incident = self.incidents.get(int(text))
            if incident is not None:
                return incident
        return self.incidents.get(text)


def _newest_first(incident: Incident) -> tuple:
    # Raw payloads may have string IDs: order numbers among numbers, text among text.
    key = incident.incident_id
    return (incident.updated, isinstance(key, int), key if isinstance(key, int) else 0, str(key))


@dataclass
class User:
    """A user object in one tenant's directory. A guest lives in `tenant_id` but signs in at
    `home_tenant_id`; Entra then names that tenant in the ID token's `idp`."""

    object_id: str
    tenant_id: str
    user_principal_name: str
    display_name: str
    email: str
    home_tenant_id: str
    groups: list[str] = field(default_factory=list)  # group object IDs
    app_roles: dict[str, list[str]] = field(default_factory=dict)  # client_id → role values
    mfa: bool = True  # whether this sign-in satisfied MFA (amr carries "mfa")

    @property
    def is_guest(self) -> bool:
        return self.home_tenant_id != self.tenant_id

    def as_dict(self) -> dict:
        return {
            "object_id": self.object_id,
            "tenant_id": self.tenant_id,
            "user_principal_name": self.user_principal_name,
            "display_name": self.display_name,
            "email": self.email,
            "home_tenant_id": self.home_tenant_id,
            "groups": list(self.groups),
            "app_roles": {k: list(v) for k, v in self.app_roles.items()},
            "mfa": self.mfa,
        }


@dataclass
class AuthCode:
    """An authorization code: single use, short-lived, bound to its request (§ sign-in)."""

    client_id: str
    tenant_id: str
    object_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str
    expires_at: float
    redeemed: bool = False


@dataclass
class Fault:
    fault_id: str
    endpoint: str
    tenant: str | None
    kind: str
    status: int = 503
    retry_after: int | None = None
    rate: float = 1.0
    count: int | None = None
    latency_ms: int = 0
    jitter_ms: int = 0
    hang_s: float = 30.0
    after: int = 0
    changed: int = 1
    seen: int = 0
    applied: int = 0

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def incident_json(incident: Incident) -> bytes:
    """The pre-serialized API form of one incident (cached until the incident changes); a raw
    payload is its bytes exactly as given."""
    if incident.raw is not None:
        return incident.raw
    if incident.json_cache is None:
        incident.json_cache = dumps(incident.data)
    return incident.json_cache


def _ticks_or_none(value) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_ticks(value)
    except (ValueError, OverflowError):
        return None


class Store:
    def __init__(self, *, seed: int = 0) -> None:
        self.lock = threading.RLock()
        self.base_seed = seed
        self.reset()

    # --- lifecycle -----------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.tenants: dict[str, Tenant] = {}
            self.domains: dict[str, str] = {}
            self.apps: dict[str, App] = {}
            self.consents: dict[tuple[str, str], Consent] = {}
            self.users: dict[str, User] = {}  # object ID → user
            self.codes: dict[str, AuthCode] = {}
            self.limits = dict(DEFAULT_LIMITS)
            self.faults: list[Fault] = []
            self.fault_rng = random.Random(self.base_seed)
            self.windows: dict[tuple[str, str], collections.deque] = {}
            self.log: collections.deque = collections.deque(maxlen=MAX_LOG)
            self.log_counts: dict = {}

    # --- tenants -------------------------------------------------------------------------
    def resolve_tenant(self, name: str) -> Tenant | None:
        """A tenant by GUID or by verified domain (case-insensitive)."""
        with self.lock:
            tenant = self.tenants.get(name.lower())
            if tenant is None:
                tid = self.domains.get(name.lower())
                tenant = self.tenants.get(tid) if tid else None
            return tenant

    def create_tenant(
        self,
        *,
        tenant_id: str | None = None,
        domain: str | None = None,
        display_name: str | None = None,
        no_sp_error: str = "7000229",
        seed: int | None = None,
        blocked: bool = False,
        cloud: str = "commercial",
    ) -> Tenant:
        from .clouds import CLOUDS

        if cloud not in CLOUDS:
            raise ControlError(400, f"cloud must be one of {', '.join(CLOUDS)}")
        tenant_id = (tenant_id or str(uuid.uuid4())).lower()
        if not GUID.match(tenant_id):
            raise ControlError(400, f"tenant_id {tenant_id!r} is not a GUID")
        if str(no_sp_error) not in ("7000229", "700016"):
            raise ControlError(400, "no_sp_error must be '7000229' or '700016'")
        with self.lock:
            if tenant_id in self.tenants:
                raise ControlError(409, f"tenant {tenant_id} exists")
            if not domain:
                domain = f"devcloud{tenant_id[:8]}.onmicrosoft.com"
            domain = domain.lower()
            if domain in self.domains:
                raise ControlError(409, f"domain {domain} is taken")
            display_name = display_name or domain.split(".")[0].capitalize()
            if seed is None:
                seed = self.base_seed * 1_000_003 + int(tenant_id[:8], 16)
            tenant = Tenant(
                tenant_id=tenant_id,
                domain=domain,
                display_name=display_name,
                no_sp_error=str(no_sp_error),
                blocked=bool(blocked),
                cloud=cloud,
                seed=seed,
                generator=Generator(tenant_id=tenant_id, domain=domain, seed=seed),
            )
            tenant.next_id = tenant.generator.rng.randint(1000, 900_000)
            self.tenants[tenant_id] = tenant
            self.domains[domain] = tenant_id
            return tenant

    def update_tenant(self, tenant_id: str, **changes) -> Tenant:
        tenant = self.tenant(tenant_id)
        with self.lock:
            if "display_name" in changes:
                tenant.display_name = str(changes["display_name"])
            if "no_sp_error" in changes:
                if str(changes["no_sp_error"]) not in ("7000229", "700016"):
                    raise ControlError(400, "no_sp_error must be '7000229' or '700016'")
                tenant.no_sp_error = str(changes["no_sp_error"])
            if "blocked" in changes:
                tenant.blocked = bool(changes["blocked"])
        return tenant

    def tenant(self, tenant_id: str) -> Tenant:
        tenant = self.resolve_tenant(tenant_id)
        if tenant is None:
            raise ControlError(404, f"no tenant {tenant_id}")
        return tenant

    # --- apps ----------------------------------------------------------------------------
    def create_app(
        self,
        *,
        client_id: str | None = None,
        display_name: str = "",
        secrets: list | None = None,
        certificates: list | None = None,
        redirect_uris: list | None = None,
        required_permissions: list | None = None,
    ) -> App:
        client_id = (client_id or str(uuid.uuid4())).lower()
        parsed_secrets = []
        for s in secrets or []:
            if isinstance(s, str):
                s = {"value": s}
            expires = s.get("expires_at")
            try:
                at = None if not expires else parse_ticks(expires) / TICKS_PER_SECOND
            except ValueError:
                raise ControlError(400, f"expires_at {expires!r} is not ISO 8601") from None
            parsed_secrets.append(Secret(str(s["value"]), at))
        certs = []
        for c in certificates or []:
            pem = (c["pem"] if isinstance(c, dict) else c).encode()
            try:
                from cryptography import x509

                cert = x509.load_pem_x509_certificate(pem)
                x5t, x5t256 = cert_thumbprints(pem)
            except ValueError as exc:
                raise ControlError(400, f"bad certificate: {exc}") from None
            certs.append({"x5t": x5t, "x5t#S256": x5t256, "public_key": cert.public_key()})
        app = App(
            client_id=client_id,
            display_name=display_name or "devcloud app",
            secrets=parsed_secrets,
            certificates=certs,
            redirect_uris=list(redirect_uris or []),
            required_permissions=list(required_permissions or ["Incident.Read.All"]),
        )
        with self.lock:
            self.apps[client_id] = app
        return app

    def app(self, client_id: str) -> App:
        with self.lock:
            app = self.apps.get(client_id.lower())
        if app is None:
            raise ControlError(404, f"no app {client_id}")
        return app

    def expire_secrets(self, client_id: str) -> App:
        app = self.app(client_id)
        with self.lock:
            for s in app.secrets:
                s.expires_at = time.time() - 1
        return app

    # --- consent -------------------------------------------------------------------------
    def consent(self, tenant_id: str, client_id: str) -> Consent:
        with self.lock:
            return self.consents.setdefault((tenant_id, client_id.lower()), Consent())

    def set_consent(
        self, tenant_id: str, client_id: str, *, state: str, roles: list | None = None
    ) -> Consent:
        if state not in CONSENT_STATES:
            raise ControlError(400, f"state must be one of {', '.join(CONSENT_STATES)}")
        tenant = self.tenant(tenant_id)
        app = self.app(client_id)
        with self.lock:
            consent = self.consent(tenant.tenant_id, app.client_id)
            consent.state = state
            if state == "consented":
                consent.roles = list(app.required_permissions if roles is None else roles)
            else:
                consent.roles = []
            if state == "none":
                consent.sp_id = ""
            elif not consent.sp_id:
                consent.sp_id = str(uuid.uuid4())
            return consent

    def consent_dict(self, tenant_id: str, client_id: str) -> dict:
        tenant = self.tenant(tenant_id)
        app = self.app(client_id)
        c = self.consent(tenant.tenant_id, app.client_id)
        return {
            "tenant_id": tenant.tenant_id,
            "client_id": app.client_id,
            "state": c.state,
            "roles": list(c.roles),
            "service_principal_id": c.sp_id or None,
        }

    # --- users (staff sign-in) -------------------------------------------------------------
    def create_user(
        self,
        tenant_id: str,
        *,
        user_principal_name: str,
        object_id: str | None = None,
        display_name: str | None = None,
        email: str | None = None,
        home_tenant_id: str | None = None,
        groups: list | None = None,
        app_roles: dict | None = None,
        mfa: bool = True,
    ) -> User:
        tenant = self.tenant(tenant_id)
        home = self.tenant(home_tenant_id).tenant_id if home_tenant_id else tenant.tenant_id
        object_id = (object_id or str(uuid.uuid4())).lower()
        if not GUID.match(object_id):
            raise ControlError(400, f"object_id {object_id!r} is not a GUID")
        user = User(
            object_id=object_id,
            tenant_id=tenant.tenant_id,
            user_principal_name=str(user_principal_name),
            display_name=str(display_name or user_principal_name.split("@")[0]),
            email=str(email if email is not None else user_principal_name),
            home_tenant_id=home,
            mfa=bool(mfa),
        )
        self._set_user_fields(user, groups=groups, app_roles=app_roles)
        with self.lock:
            if object_id in self.users:
                raise ControlError(409, f"user {object_id} exists")
            self.users[object_id] = user
        return user

    def _set_user_fields(self, user: User, **changes) -> None:
        if changes.get("groups") is not None:
            groups = changes["groups"]
            if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
                raise ControlError(400, "groups must be a list of group object IDs")
            user.groups = list(groups)
        if changes.get("app_roles") is not None:
            roles = changes["app_roles"]
            if not isinstance(roles, dict) or not all(
                isinstance(v, list) and all(isinstance(r, str) for r in v) for v in roles.values()
            ):
                raise ControlError(400, "app_roles must map client IDs to lists of role values")
            user.app_roles = {k.lower(): list(v) for k, v in roles.items()}

    def update_user(self, tenant_id: str, object_id: str, **changes) -> User:
        user = self.user(tenant_id, object_id)
        with self.lock:
            for name in ("display_name", "email", "user_principal_name"):
                if name in changes:
                    setattr(user, name, str(changes[name]))
            if "mfa" in changes:
                user.mfa = bool(changes["mfa"])
            self._set_user_fields(user, **changes)
        return user

    def user(self, tenant_id: str, object_id: str) -> User:
        tenant = self.tenant(tenant_id)
        with self.lock:
            user = self.users.get(object_id.lower())
        if user is None or user.tenant_id != tenant.tenant_id:
            raise ControlError(404, f"no user {object_id} in tenant {tenant.tenant_id}")
        return user

    def tenant_users(self, tenant_id: str) -> list[User]:
        tenant = self.tenant(tenant_id)
        with self.lock:
            found = [u for u in self.users.values() if u.tenant_id == tenant.tenant_id]
        return sorted(found, key=lambda u: u.user_principal_name.lower())

    def expire_codes(self) -> int:
        with self.lock:
            for code in self.codes.values():
                code.expires_at = 0.0
            return len(self.codes)

    # --- incidents -----------------------------------------------------------------------
    def generate(
        self,
        tenant_id: str,
        count: int,
        *,
        seed: int | None = None,
        alerts_per_incident: int | None = None,
        days: float = 30.0,
    ) -> list[int]:
        tenant = self.tenant(tenant_id)
        with self.lock:
            gen = tenant.generator
            if seed is not None:
                gen.rng.seed(seed)
            rng = gen.rng
            now = self.clock_ticks()
            span = int(days * 86400 * TICKS_PER_SECOND)
            created_list = sorted(now - rng.randint(0, span) for _ in range(count))
            ids = []
            for created in created_list:
                tenant.next_id += rng.randint(1, 40)
                while tenant.next_id in tenant.incidents:  # taken by a raw payload
                    tenant.next_id += 1
                room = min(3 * 86400 * TICKS_PER_SECOND, now - created)
                updated = created + max(rng.randint(0, max(room, 0)), min(room, 10**6))
                n = alerts_per_incident or rng.choice([1, 1, 1, 2, 2, 3, 4])
                incident = gen.incident(tenant.next_id, created, updated, n)
                if ids and rng.random() < 0.04:
                    incident.data["status"] = "Redirected"
                    incident.data["redirectIncidentId"] = rng.choice(ids)
                tenant.incidents[incident.incident_id] = incident
                ids.append(incident.incident_id)
            tenant.order = None
            return ids

    def evolve(
        self,
        tenant_id: str,
        *,
        changed: int = 5,
        new: int = 1,
        seed: int | None = None,
        late_seconds: float = 0,
    ) -> dict:
        """Change `changed` random incidents and add `new` ones. `late_seconds`: the changes
        were indexed late — listed only from now on, stamped (lastUpdateTime) that long ago,
        so that they appear behind changes already listed."""
        late = int(late_seconds * TICKS_PER_SECOND)
        tenant = self.tenant(tenant_id)
        with self.lock:
            gen = tenant.generator
            if seed is not None:
                gen.rng.seed(seed)
            # Raw payloads stay exactly as they were given.
            candidates = sorted(k for k, i in tenant.incidents.items() if i.raw is None)
            picked = gen.rng.sample(candidates, min(changed, len(candidates)))
            for incident_id in picked:
                incident = tenant.incidents[incident_id]
                gen.change(incident, self._bump(incident, late))
                incident.invalidate()
            added = []
            for _ in range(new):
                now = self.clock_ticks() - late
                tenant.next_id += gen.rng.randint(1, 40)
                while tenant.next_id in tenant.incidents:  # taken by a raw payload
                    tenant.next_id += 1
                n = gen.rng.choice([1, 1, 2, 3])
                incident = gen.incident(tenant.next_id, now - gen.rng.randint(1, 10**6), now, n)
                tenant.incidents[incident.incident_id] = incident
                added.append(incident.incident_id)
            tenant.order = None
            return {"changed": sorted(picked), "added": added}

    def clock_ticks(self) -> int:
        """Now on Microsoft's clock (limits["clock_offset"])."""
        return now_ticks() + self.limits.get("clock_offset", 0) * TICKS_PER_SECOND

    def _bump(self, incident: Incident, late: int = 0) -> int:
        # Keep every change of an incident strictly after its previous one, even when
        # Microsoft's clock stepped back; `late`: stamped that long ago (indexed late).
        return centiseconds_up(max(self.clock_ticks() - late, incident.updated + 1))

    def update_incident(
        self, tenant: Tenant, incident_id: int | str, changes: dict, author: str
    ) -> bytes:
        """Apply a validated PATCH; returns the entity JSON. A raw payload is re-serialized
        from then on (as Microsoft would answer with its own serialization)."""
        with self.lock:
            incident = tenant.incidents[incident_id]
            incident.raw = None
            data = incident.data
            when = self._bump(incident)
            for key in (
                "status",
                "assignedTo",
                "classification",
                "determination",
                "incidentName",
                "severity",
            ):
                if key in changes:
                    data[key] = changes[key]
            # Graph-only properties (description, summary, resolvingComment) live beside
            # the Defender representation, which does not show them.
            for key in ("description", "summary", "resolvingComment"):
                if key in changes:
                    incident.extra[key] = changes[key]
            incident.extra["lastModifiedBy"] = author
            if "tags" in changes:
                data["tags"] = list(changes["tags"])
            if changes.get("comment"):
                data.setdefault("comments", []).append(
                    {
                        "comment": changes["comment"],
                        "createdBy": author,
                        "createdTime": format_ticks(full_ticks(when)),
                    }
                )
            incident.updated = when
            data["lastUpdateTime"] = format_ticks(when)
            incident.invalidate()
            tenant.order = None
            return incident_json(incident)

    def merge_incident(self, tenant_id: str, incident_id: int, into: int) -> dict:
        """Merge one incident into another, as Microsoft does when it (or an analyst)
        correlates them: the merged one becomes `Redirected` with `redirectIncidentId` = the
        target, its alerts move to the target, and both get a new `lastUpdateTime`. From
        then on the merged incident is still listed and readable, but a PATCH of it answers
        404 (see `Tenant.writable`)."""
        tenant = self.tenant(tenant_id)
        with self.lock:
            source, target = tenant.incidents.get(incident_id), tenant.incidents.get(into)
            if source is None or target is None:
                raise ControlError(404, "no such incident in this tenant")
            if source is target or target.data.get("redirectIncidentId") is not None:
                raise ControlError(400, "merge into another incident that is not merged itself")
            for incident in (source, target):
                incident.raw = None  # re-serialized from now on, as after a PATCH
                when = self._bump(incident)
                incident.updated = when
                incident.data["lastUpdateTime"] = format_ticks(when)
                incident.invalidate()
            moved = source.data.get("alerts") or []
            for alert in moved:
                alert["incidentId"] = into
            target.data.setdefault("alerts", []).extend(moved)
            source.data["alerts"] = []
            source.data["status"] = "Redirected"
            source.data["redirectIncidentId"] = into
            tenant.order = None
            return {
                "incident": json.loads(incident_json(source)),
                "into": json.loads(incident_json(target)),
            }

    def ground_truth(self, tenant_id: str) -> list[dict]:
        return json.loads(self.ground_truth_json(tenant_id))

    def ground_truth_json(self, tenant_id: str) -> bytes:
        """Every incident as the API serves it, newest first, as one JSON array (bytes: a raw
        payload with a lone surrogate cannot be re-encoded)."""
        tenant = self.tenant(tenant_id)
        with self.lock:
            return b"[" + b",".join(incident_json(i) for i in tenant.sorted_incidents()) + b"]"

    def put_raw_incident(self, tenant_id: str, body: bytes, *, updated: str | None = None) -> dict:
        """Store one incident exactly as given (JSON text of an object), served byte for byte
        by the APIs: NULs, lone surrogates, odd IDs and dates stay as they are. The key is
        `incidentId` (else Graph's `id`): an integer stays a number, anything else is keyed by
        its text; without either, a generated `devcloud-noid-N`. The same key replaces the
        incident. Ordering and `$filter` use `updated`, else the payload's `lastUpdateTime`
        when it parses, else now; `createdTime` likewise (else none)."""
        try:
            data = json.loads(body)
        except ValueError as exc:  # also UnicodeDecodeError
            raise ControlError(400, f"body must be JSON text: {exc}") from None
        if not isinstance(data, dict):
            raise ControlError(400, "body must be a JSON object (one incident)")
        tenant = self.tenant(tenant_id)
        with self.lock:
            raw_key = data.get("incidentId", data.get("id"))
            if "incidentId" not in data and "id" not in data:
                tenant.noid += 1
                key: int | str = f"devcloud-noid-{tenant.noid}"
            elif isinstance(raw_key, str) or type(raw_key) is int:
                key = raw_key
            else:
                key = json.dumps(raw_key)
            if updated is not None:
                try:
                    updated_ticks = parse_ticks(updated)
                except (ValueError, OverflowError):
                    raise ControlError(400, f"updated {updated!r} is not ISO 8601") from None
            else:
                updated_ticks = _ticks_or_none(data.get("lastUpdateTime")) or self.clock_ticks()
            created_ticks = _ticks_or_none(data.get("createdTime"))
            incident = Incident(key, created_ticks, updated_ticks, data, raw=bytes(body))
            tenant.incidents[key] = incident
            tenant.order = None
        return {"tenant_id": tenant.tenant_id, "key": key, "bytes": len(body)}

    # --- limits --------------------------------------------------------------------------
    def set_limits(self, **kw) -> dict:
        with self.lock:
            for key, value in kw.items():
                if key not in DEFAULT_LIMITS:
                    raise ControlError(400, f"unknown limit {key!r}")
                if value is None:
                    continue
                if key == "clock_offset" and isinstance(value, int):
                    self.limits[key] = value
                    continue
                if not isinstance(value, int) or value < 1:
                    raise ControlError(400, f"{key} must be a positive integer")
                self.limits[key] = value
            return dict(self.limits)

    def throttle(self, tenant_id: str, client_id: str) -> tuple[int, str] | None:
        """Count one API call for (tenant, app); (retry_after, window) when over the limit.
        A throttled call is not counted."""
        now = time.monotonic()
        with self.lock:
            minute, hour = self.windows.setdefault(
                (tenant_id, client_id), (collections.deque(), collections.deque())
            )
            while minute and minute[0] <= now - 60:
                minute.popleft()
            while hour and hour[0] <= now - 3600:
                hour.popleft()
            per_minute, per_hour = self.limits["per_minute"], self.limits["per_hour"]
            if len(hour) >= per_hour:
                oldest = hour[len(hour) - per_hour]
                return max(1, math.ceil(oldest + 3600 - now)), "hour"
            if len(minute) >= per_minute:
                oldest = minute[len(minute) - per_minute]
                return max(1, math.ceil(oldest + 60 - now)), "minute"
            minute.append(now)
            hour.append(now)
            return None

    # --- request log ---------------------------------------------------------------------
    def record(
        self,
        *,
        method: str,
        path: str,
        endpoint: str,
        tenant: str | None,
        status: int,
        note: str | None = None,
    ) -> None:
        entry = {
            "time": format_ticks(now_ticks()),
            "method": method,
            "path": path,
            "endpoint": endpoint,
            "tenant": tenant,
            "status": status,
        }
        if note:
            entry["note"] = note
        with self.lock:
            self.log.append(entry)
            # Counts are kept apart from the (bounded) entries, so they stay exact.
            for key in (None, tenant or ""):
                counts = self.log_counts.setdefault(
                    key,
                    {
                        "total": 0,
                        "by_endpoint": collections.Counter(),
                        "by_status": collections.Counter(),
                        "by_tenant": collections.Counter(),
                    },
                )
                counts["total"] += 1
                counts["by_endpoint"][endpoint] += 1
                counts["by_status"][str(status)] += 1
                counts["by_tenant"][tenant or ""] += 1

    def requests_log(self, tenant: str | None = None, *, entries: bool = True) -> dict:
        key = None
        if tenant:
            t = self.resolve_tenant(tenant)
            key = t.tenant_id if t else tenant.lower()
        with self.lock:
            counts = self.log_counts.get(key)
            listed = [e for e in self.log if key is None or e["tenant"] == key] if entries else []
            return {
                "total": counts["total"] if counts else 0,
                "by_endpoint": dict(counts["by_endpoint"]) if counts else {},
                "by_status": dict(counts["by_status"]) if counts else {},
                "by_tenant": dict(counts["by_tenant"]) if counts else {},
                "entries": listed,
            }

    def clear_requests(self) -> None:
        with self.lock:
            self.log.clear()
            self.log_counts = {}

    # --- faults --------------------------------------------------------------------------
    def add_fault(self, **kw) -> Fault:
        kind = kw.get("kind")
        endpoint = kw.get("endpoint", "*")
        if kind not in FAULT_KINDS:
            raise ControlError(400, f"kind must be one of {', '.join(FAULT_KINDS)}")
        if endpoint not in FAULT_ENDPOINTS:
            raise ControlError(400, f"endpoint must be one of {', '.join(FAULT_ENDPOINTS)}")
        allowed = set(Fault.__dataclass_fields__) - {"fault_id", "seen", "applied"}
        unknown = set(kw) - allowed
        if unknown:
            raise ControlError(400, f"unknown fault fields: {', '.join(sorted(unknown))}")
        rate = float(kw.get("rate", 1.0))
        if not 0 <= rate <= 1:
            raise ControlError(400, "rate must be between 0 and 1")
        tenant = kw.get("tenant")
        if tenant:
            resolved = self.resolve_tenant(tenant)
            tenant = resolved.tenant_id if resolved else tenant.lower()
        fields = {k: v for k, v in kw.items() if v is not None}
        fields |= {"tenant": tenant or None, "rate": rate, "endpoint": endpoint}
        fault = Fault(fault_id=uuid.uuid4().hex[:12], **fields)
        if kind == "status" and fault.status not in (400, 401, 403, 404, 429, 500, 502, 503, 504):
            raise ControlError(400, "status must be an HTTP error status such as 429, 500, 503")
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults = []

    def matching_faults(self, endpoint: str, tenant: str | None) -> list[Fault]:
        """The faults that fire for this request (counts `after`, `count` and `rate`)."""
        fired = []
        with self.lock:
            for f in self.faults:
                if f.endpoint not in ("*", endpoint):
                    continue
                if f.tenant and f.tenant != tenant:
                    continue
                f.seen += 1
                if f.seen <= f.after:
                    continue
                if f.count is not None and f.applied >= f.count:
                    continue
                if f.rate < 1 and self.fault_rng.random() >= f.rate:
                    continue
                f.applied += 1
                fired.append(f)
        return fired
