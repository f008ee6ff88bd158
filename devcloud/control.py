"""The control API under /_devcloud/ (JSON in, JSON out): how tests and the demo drive
devcloud. Documented in devcloud/README.md."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .state import ControlError
from .web import JSON, Request, Response, json_response

if TYPE_CHECKING:
    from .app import DevCloudApp


def _body(req: Request) -> dict:
    if not req.body:
        return {}
    try:
        data = req.json()
    except ValueError:
        raise ControlError(400, "body must be JSON") from None
    if not isinstance(data, dict):
        raise ControlError(400, "body must be a JSON object")
    return data


def _pick(data: dict, *names: str) -> dict:
    unknown = set(data) - set(names)
    if unknown:
        raise ControlError(400, f"unknown fields: {', '.join(sorted(unknown))}")
    return {k: data[k] for k in names if k in data}


ROUTES: list[tuple[str, str, str]] = [
    ("GET", r"/health", "health"),
    ("POST", r"/reset", "reset"),
    ("GET", r"/tenants", "tenants"),
    ("POST", r"/tenants", "create_tenant"),
    ("GET", r"/tenants/(?P<tid>[^/]+)", "get_tenant"),
    ("PATCH", r"/tenants/(?P<tid>[^/]+)", "update_tenant"),
    ("GET", r"/apps", "apps"),
    ("POST", r"/apps", "create_app"),
    ("GET", r"/apps/(?P<cid>[^/]+)", "get_app"),
    ("POST", r"/apps/(?P<cid>[^/]+)/secrets/expire", "expire_secrets"),
    ("GET", r"/tenants/(?P<tid>[^/]+)/apps/(?P<cid>[^/]+)", "consent"),
    ("PUT", r"/tenants/(?P<tid>[^/]+)/apps/(?P<cid>[^/]+)", "set_consent"),
    ("DELETE", r"/tenants/(?P<tid>[^/]+)/apps/(?P<cid>[^/]+)", "revoke_consent"),
    ("GET", r"/tenants/(?P<tid>[^/]+)/users", "users"),
    ("POST", r"/tenants/(?P<tid>[^/]+)/users", "create_user"),
    ("GET", r"/tenants/(?P<tid>[^/]+)/users/(?P<oid>[^/]+)", "get_user"),
    ("PATCH", r"/tenants/(?P<tid>[^/]+)/users/(?P<oid>[^/]+)", "update_user"),
    ("POST", r"/codes/expire", "expire_codes"),
    ("GET", r"/tenants/(?P<tid>[^/]+)/incidents", "incidents"),
    ("POST", r"/tenants/(?P<tid>[^/]+)/incidents/generate", "generate"),
    ("POST", r"/tenants/(?P<tid>[^/]+)/incidents/evolve", "evolve"),
    ("POST", r"/tenants/(?P<tid>[^/]+)/incidents/raw", "raw_incident"),
    ("POST", r"/tenants/(?P<tid>[^/]+)/incidents/(?P<incident_id>\d+)/merge", "merge_incident"),
    ("GET", r"/requests", "requests_log"),
    ("DELETE", r"/requests", "clear_requests"),
    ("GET", r"/faults", "faults"),
    ("POST", r"/faults", "add_fault"),
    ("DELETE", r"/faults", "clear_faults"),
    ("GET", r"/limits", "limits"),
    ("PUT", r"/limits", "set_limits"),
]
COMPILED = [(m, re.compile(f"^{p}/?$"), name) for m, p, name in ROUTES]


def handle(app: DevCloudApp, req: Request, subpath: str) -> Response:
    allowed = []
    for method, pattern, name in COMPILED:
        m = pattern.match(subpath)
        if not m:
            continue
        if method != req.method:
            allowed.append(method)
            continue
        try:
            status, result = globals()[f"_{name}"](app, req, **m.groupdict())
        except ControlError as exc:
            return json_response(exc.status, {"error": exc.message})
        except (KeyError, TypeError, ValueError) as exc:
            return json_response(400, {"error": f"bad request: {exc}"})
        if isinstance(result, bytes):  # JSON already serialized (raw payloads inside)
            return Response(status, result, [("Content-Type", JSON)])
        return json_response(status, result)
    if allowed:
        return json_response(405, {"error": f"use {', '.join(allowed)}"})
    return json_response(404, {"error": f"no control route /_devcloud{subpath}"})


def _health(app, req):
    return 200, {"status": "ok", "base_url": app.base_url}


def _reset(app, req):
    data = _pick(_body(req), "scenario")
    app.store.reset()
    app.token_cache.clear()
    if data.get("scenario"):
        from .scenarios import load

        load(app.store, data["scenario"])
    return 200, {"status": "reset"}


def _tenants(app, req):
    with app.store.lock:
        return 200, [t.as_dict() for t in app.store.tenants.values()]


def _create_tenant(app, req):
    data = _pick(
        _body(req), "tenant_id", "domain", "display_name", "no_sp_error", "seed", "blocked", "cloud"
    )
    return 201, app.store.create_tenant(**data).as_dict()


def _get_tenant(app, req, tid):
    return 200, app.store.tenant(tid).as_dict()


def _update_tenant(app, req, tid):
    data = _pick(_body(req), "display_name", "no_sp_error", "blocked")
    return 200, app.store.update_tenant(tid, **data).as_dict()


def _apps(app, req):
    with app.store.lock:
        return 200, [a.as_dict() for a in app.store.apps.values()]


def _create_app(app, req):
    data = _pick(
        _body(req),
        "client_id",
        "display_name",
        "secrets",
        "certificates",
        "redirect_uris",
        "required_permissions",
    )
    return 201, app.store.create_app(**data).as_dict()


def _get_app(app, req, cid):
    return 200, app.store.app(cid).as_dict()


def _expire_secrets(app, req, cid):
    return 200, app.store.expire_secrets(cid).as_dict()


def _consent(app, req, tid, cid):
    return 200, app.store.consent_dict(tid, cid)


def _set_consent(app, req, tid, cid):
    data = _pick(_body(req), "state", "roles")
    app.store.set_consent(tid, cid, state=data.get("state", "consented"), roles=data.get("roles"))
    return 200, app.store.consent_dict(tid, cid)


def _revoke_consent(app, req, tid, cid):
    app.store.set_consent(tid, cid, state="none")
    return 200, app.store.consent_dict(tid, cid)


USER_FIELDS = ("display_name", "email", "groups", "app_roles", "mfa", "user_principal_name")


def _users(app, req, tid):
    return 200, [u.as_dict() for u in app.store.tenant_users(tid)]


def _create_user(app, req, tid):
    data = _pick(_body(req), "object_id", "home_tenant_id", *USER_FIELDS)
    if not data.get("user_principal_name"):
        raise ControlError(400, "user_principal_name is required")
    return 201, app.store.create_user(tid, **data).as_dict()


def _get_user(app, req, tid, oid):
    return 200, app.store.user(tid, oid).as_dict()


def _update_user(app, req, tid, oid):
    data = _pick(_body(req), *USER_FIELDS)
    return 200, app.store.update_user(tid, oid, **data).as_dict()


def _expire_codes(app, req):
    return 200, {"expired": app.store.expire_codes()}


def _incidents(app, req, tid):
    return 200, app.store.ground_truth_json(tid)


def _generate(app, req, tid):
    data = _pick(_body(req), "count", "seed", "alerts_per_incident", "days")
    count = int(data.get("count", 10))
    if not 0 <= count <= 100_000:
        raise ControlError(400, "count must be between 0 and 100000")
    ids = app.store.generate(
        tid,
        count,
        seed=data.get("seed"),
        alerts_per_incident=data.get("alerts_per_incident"),
        days=float(data.get("days", 30)),
    )
    return 201, {"tenant_id": app.store.tenant(tid).tenant_id, "added": ids}


def _evolve(app, req, tid):
    data = _pick(_body(req), "changed", "new", "seed", "late_seconds")
    result = app.store.evolve(
        tid,
        changed=int(data.get("changed", 5)),
        new=int(data.get("new", 1)),
        seed=data.get("seed"),
        late_seconds=float(data.get("late_seconds", 0)),
    )
    return 200, result


def _raw_incident(app, req, tid):
    # The body is the incident itself, not wrapped: its bytes are what the APIs will serve.
    return 201, app.store.put_raw_incident(tid, req.body, updated=req.q("updated"))


def _merge_incident(app, req, tid, incident_id):
    data = _pick(_body(req), "into")
    into = data.get("into")
    if type(into) is not int:
        raise ControlError(400, "into must be the incident ID to merge into")
    return 200, app.store.merge_incident(tid, int(incident_id), into)


def _requests_log(app, req):
    entries = (req.q("entries") or "true").lower() not in ("0", "false", "no")
    return 200, app.store.requests_log(req.q("tenant"), entries=entries)


def _clear_requests(app, req):
    app.store.clear_requests()
    return 200, {"status": "cleared"}


def _faults(app, req):
    with app.store.lock:
        return 200, [f.as_dict() for f in app.store.faults]


def _add_fault(app, req):
    fault = app.store.add_fault(**_body(req))
    return 201, fault.as_dict()


def _clear_faults(app, req):
    app.store.clear_faults()
    return 200, {"status": "cleared"}


def _limits(app, req):
    return 200, dict(app.store.limits)


def _set_limits(app, req):
    return 200, app.store.set_limits(
        **_pick(
            _body(req),
            *("per_minute", "per_hour", "token_lifetime", "code_lifetime", "clock_offset"),
        )
    )
