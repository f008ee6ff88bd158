"""Routing, fault injection and the request log: one place every request goes through."""

from __future__ import annotations

import html
import re
import threading
import time
from urllib.parse import unquote

from . import clouds, consent, control, defender, entra, graph, signin
from .pki import Pki
from .state import Store
from .web import Request, Response, html_response, json_response

TENANT = r"(?P<tenant>[^/]+)"
CLOUD_PREFIX = re.compile(r"^/_clouds/(?P<cloud>[a-z_]+)(?P<rest>/.*)?$")
ROUTES: list[tuple[re.Pattern, str]] = [
    (re.compile(rf"^/{TENANT}/v2\.0/\.well-known/openid-configuration$"), "discovery"),
    (re.compile(rf"^/{TENANT}/\.well-known/openid-configuration$"), "discovery"),
    (re.compile(rf"^/{TENANT}/discovery/v2\.0/keys$"), "jwks"),
    (re.compile(rf"^/{TENANT}/discovery/keys$"), "jwks"),
    (re.compile(rf"^/{TENANT}/oauth2/v2\.0/token$"), "token"),
    (re.compile(rf"^/{TENANT}/oauth2/token$"), "token"),
    (re.compile(rf"^/{TENANT}/oauth2/v2\.0/authorize$"), "authorize"),
    (re.compile(rf"^/{TENANT}/oauth2/v2\.0/logout$"), "logout"),
    (re.compile(rf"^/{TENANT}/v2\.0/adminconsent$"), "consent"),
    (re.compile(rf"^/{TENANT}/adminconsent$"), "consent"),
    (re.compile(rf"^/{TENANT}/oauth2/authorize$"), "consent"),
    (re.compile(r"^/api/incidents/?$", re.IGNORECASE), "incidents"),
    (re.compile(r"^/api/incidents/(?P<id>[^/]+)$", re.IGNORECASE), "incident"),
    (re.compile(r"^/v1\.0/security/incidents/?$"), "graph_incidents"),
    (re.compile(r"^/v1\.0/security/incidents/(?P<id>[^/]+)$"), "graph_incident"),
    (re.compile(r"^/v1\.0/security/incidents/(?P<id>[^/]+)/comments$"), "graph_comments"),
]
GRAPH_ENDPOINTS = {
    ("graph_incidents", "GET"): "graph_list_incidents",
    ("graph_incident", "GET"): "graph_get_incident",
    ("graph_incident", "PATCH"): "graph_update_incident",
    ("graph_comments", "POST"): "graph_add_comment",
}


class DevCloudApp:
    def __init__(self, *, store: Store, pki: Pki, host: str, https_port: int = 0) -> None:
        self.store = store
        self.pki = pki
        self.host = host
        self.https_port = https_port
        self.http_port: int | None = None
        self.token_cache: dict[str, dict] = {}
        self.stopping = threading.Event()

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        return f"https://{host}:{self.https_port}"

    def https_base(self, req: Request) -> str:
        """Where the HTTPS endpoints are, as seen by this caller (the consent page may be
        served over plain HTTP, discovery and tokens never are)."""
        if req.scheme == "https":
            return req.base_url
        hostname = req.host.rsplit(":", 1)[0] if not req.host.endswith("]") else req.host
        return f"https://{hostname}:{self.https_port}"

    # --- dispatch ----------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        path = req.path
        prefixed = CLOUD_PREFIX.match(path)
        if prefixed:
            # One cloud's hosts under their own base URL (devcloud/clouds.py).
            if prefixed["cloud"] not in clouds.CLOUDS:
                return json_response(404, {"error": f"no cloud {prefixed['cloud']}"})
            req.cloud = prefixed["cloud"]
            req.prefix = f"/_clouds/{req.cloud}"
            path = req.path = prefixed["rest"] or "/"
            if path.startswith("/_devcloud"):
                return json_response(404, {"error": "the control API is not per cloud"})
        if path.startswith("/_devcloud/") or path == "/_devcloud":
            return control.handle(self, req, path[len("/_devcloud") :] or "/")
        if path in ("/", "/favicon.ico"):
            return self._home(req) if path == "/" else Response(404)
        for pattern, kind in ROUTES:
            m = pattern.match(path)
            if m:
                return self._routed(req, kind, m.groupdict())
        return json_response(
            404,
            {
                "error": {
                    "code": "ResourceNotFound",
                    "message": f"No route for {path}",
                    "target": "",
                }
            },
        )

    def _routed(self, req: Request, kind: str, params: dict) -> Response:
        endpoint, tenant = self._classify(req, kind, params)
        if endpoint is None:
            return json_response(
                405,
                {"error": {"code": "MethodNotAllowed", "message": f"{req.method} not allowed"}},
                [("Allow", "GET, PATCH" if kind in ("incident", "graph_incident") else "GET")],
            )
        faults = self.store.matching_faults(endpoint, tenant)
        terminal = None
        for fault in faults:
            if fault.kind == "latency":
                delay = fault.latency_ms / 1000
                if fault.jitter_ms:
                    delay += self.store.fault_rng.random() * fault.jitter_ms / 1000
                self.stopping.wait(delay)
            elif fault.kind == "evolve":
                target = fault.tenant or tenant
                if target and self.store.resolve_tenant(target):
                    self.store.evolve(target, changed=fault.changed, new=0)
            elif terminal is None:
                terminal = fault
        if terminal is not None and terminal.kind in ("status", "reset", "hang"):
            resp = self._fault_response(req, endpoint, terminal)
        else:
            resp = self._dispatch(req, kind, params)
            if terminal is not None and terminal.kind == "truncate":
                resp.action = "truncate"
            elif terminal is not None and terminal.kind == "malformed":
                resp = Response(
                    200,
                    resp.body[: max(1, len(resp.body) // 2)] + b"<!-- devcloud -->",
                    [("Content-Type", resp.header("Content-Type") or "application/json")],
                )
        status = 0 if resp.action in ("reset", "hang") else resp.status
        self.store.record(
            method=req.method,
            path=req.prefix + req.path,
            endpoint=endpoint,
            tenant=tenant,
            status=status,
            note=req.note,
        )
        return resp

    def _classify(self, req: Request, kind: str, params: dict) -> tuple[str | None, str | None]:
        method = req.method
        if kind == "incidents":
            ok = method == "GET"
            return ("list_incidents" if ok else None), defender.unverified_tid(self, req)
        if kind == "incident":
            endpoint = {"GET": "get_incident", "PATCH": "update_incident"}.get(method)
            return endpoint, defender.unverified_tid(self, req)
        if kind.startswith("graph_"):
            return GRAPH_ENDPOINTS.get((kind, method)), defender.unverified_tid(self, req)
        seg = unquote(params["tenant"])
        tenant = self.store.resolve_tenant(seg)
        tid = tenant.tenant_id if tenant else seg.lower()
        if kind == "token":
            return "token", tid
        if kind in ("consent", "authorize"):
            return (kind if method in ("GET", "POST") else None), tid
        return (kind if method == "GET" else None), tid

    def _dispatch(self, req: Request, kind: str, params: dict) -> Response:
        tenant = params.get("tenant", "")
        if kind == "discovery":
            return entra.discovery(self, req, tenant, v2="/v2.0/" in req.path)
        if kind == "jwks":
            return entra.jwks(self, req, tenant, v2="/v2.0/" in req.path)
        if kind == "token":
            return entra.token(self, req, tenant, v1="/v2.0/" not in req.path)
        if kind == "authorize":
            return signin.authorize(self, req, tenant)
        if kind == "logout":
            return signin.logout(self, req, tenant)
        if kind == "consent":
            if req.path.endswith("/v2.0/adminconsent"):
                variant = "v2"
            elif req.path.endswith("/adminconsent"):
                variant = "v1"
            else:
                variant = "authorize"
            return consent.admin_consent(self, req, tenant, variant)
        if kind == "incidents":
            return defender.list_incidents(self, req)
        if kind == "graph_incidents":
            return graph.list_incidents(self, req)
        if kind == "graph_comments":
            return graph.add_comment(self, req, params["id"])
        if kind == "graph_incident":
            if req.method == "PATCH":
                return graph.update_incident(self, req, params["id"])
            return graph.get_incident(self, req, params["id"])
        if req.method == "PATCH":
            return defender.update_incident(self, req, params["id"])
        return defender.get_incident(self, req, params["id"])

    def _fault_response(self, req: Request, endpoint: str, fault) -> Response:
        if fault.kind == "reset":
            return Response(0, action="reset")
        if fault.kind == "hang":
            return Response(0, action="hang", hang_s=fault.hang_s)
        status = fault.status
        extra = []
        retry_after = fault.retry_after
        if retry_after is None and status == 429:
            retry_after = 1
        if retry_after is not None:
            extra.append(("Retry-After", str(retry_after)))
        if endpoint in ("token", "discovery", "jwks", "consent", "authorize", "logout"):
            error = {429: "temporarily_unavailable", 503: "temporarily_unavailable"}.get(
                status, "server_error" if status >= 500 else "invalid_request"
            )
            exc = entra.EntraError(
                status, error, 90033, "A transient error has occurred. Please try again."
            )
            return entra.error_response(req, exc, extra)
        if endpoint.startswith("graph_"):
            code = "TooManyRequests" if status == 429 else f"devcloudFault{status}"
            return graph.graph_error(req, status, code, "devcloud fault", extra)
        if status == 429:
            return defender.too_many(retry_after or 1, self.store.limits["per_minute"], "minute")
        code = {
            400: "BadRequest",
            401: "Unauthorized",
            403: "Forbidden",
            404: "NotFound",
            500: "InternalServerError",
            502: "BadGateway",
            503: "ServiceUnavailable",
            504: "GatewayTimeout",
        }[status]
        message = "Invalid Authorization payload." if status == 401 else f"devcloud fault: {code}"
        return defender.api_error(status, code, message, extra)

    def _home(self, req: Request) -> Response:
        with self.store.lock:
            rows = "".join(
                f"<tr><td>{html.escape(t.display_name)}</td><td><code>{t.tenant_id}</code></td>"
                f"<td>{html.escape(t.domain)}</td><td>{len(t.incidents)}</td></tr>"
                for t in self.store.tenants.values()
            )
        page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>devcloud — not Microsoft</title></head><body style="font-family:system-ui,sans-serif">
<h1>devcloud — not Microsoft</h1>
<p>A local emulator of Microsoft Entra ID and the Microsoft 365 Defender incidents API, for
development, tests and demos. Now {time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())}.</p>
<table border="1" cellpadding="4"><tr><th>Tenant</th><th>ID</th><th>Domain</th>
<th>Incidents</th></tr>{rows}</table></body></html>"""
        return html_response(200, page)
