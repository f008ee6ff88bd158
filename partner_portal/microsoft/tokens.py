"""The MSAL token broker: app-only tokens per (cloud, customer tenant, resource).

The resource is the Defender API or Microsoft Graph of the tenant's cloud (`clouds`); each
cloud's app registration (settings) asks its own login host.

1. The token cache is an `msal.SerializableTokenCache` kept in Django's cache (Redis in
   production), Fernet-encrypted, one entry per (client id, cloud, tenant, resource), so every
   worker on every machine reuses a token another one obtained. A token still good in that
   entry is served from it directly (one cache read, no MSAL: the tenant-runs of a schedule
   cycle cost no per-tenant state in the process). A short lock makes concurrent misses wait
   for the first request instead of all asking Entra.
2. A miss goes through an `msal.ConfidentialClientApplication` per (cloud, tenant), kept per
   process in a bounded LRU (`APPS_PER_PROCESS`): worker memory stays flat however many
   tenants it serves. Its constructor fetches the tenant's OpenID configuration (§5.3 of
   microsoft-protocols.md); that document is shared by every process through the cache for a
   day (`_RecordingClient`), so a tenant is discovered once a day, not once per process.
3. Errors come out classified (`partner_portal.microsoft.errors`), never as MSAL dicts.

Tokens never reach a log, a model field or a page.

Reference: https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from msal.exceptions import MsalServiceError

from partner_portal.microsoft import claims, errors
from partner_portal.microsoft.clouds import CREDENTIAL_CLOUD, get_cloud
from partner_portal.microsoft.http import TimeoutSession, shared_session

# MSAL treats a cached token with less than 5 minutes left as expired (§5.4).
_MSAL_EXPIRY_MARGIN = 300
_CACHE_PREFIX = "msal-token-cache:"
_GENERATION_PREFIX = "msal-app-generation:"
_LOCK_WAIT_SECONDS = 15.0
_DISCOVERY_PREFIX = "msal-discovery:"
# Tenant discovery documents change rarely; Microsoft's own MSAL keeps them a day (§5.3).
DISCOVERY_SECONDS = 24 * 3600
# MSAL apps kept per process. A miss rebuilds one from the shared discovery document (no
# request); the apps are needed only once a token is due (about hourly per tenant).
APPS_PER_PROCESS = 64


@dataclass(frozen=True)
class Config:
    """What `microsoft/` needs from settings (the broker and the clients), read in one place
    (`config()`)."""

    client_id: str
    client_secret: str
    certificate_pem: str
    private_key_pem: str
    login_base_url: str
    ca_bundle: str
    timeout: float
    cache_key: str
    defender_base_url: str = ""
    graph_base_url: str = ""
    # The portal updates incidents (it needs ReadWrite, not Read).
    incident_updates: bool = False

    @property
    def credential_fingerprint(self) -> str:
        """Tells apps built with different credentials apart, without keeping the secret."""
        material = f"{self.client_secret}\0{self.private_key_pem}".encode()
        return hashlib.sha256(material).hexdigest()[:16]


def _credentials(cloud: str) -> dict[str, str]:
    from django.conf import settings

    which = CREDENTIAL_CLOUD.get(cloud, "commercial")
    if which != "commercial":
        return dict(settings.MICROSOFT_CLOUD_CREDENTIALS.get(which) or {})
    return {
        "client_id": settings.MICROSOFT_CLIENT_ID,
        "client_secret": settings.MICROSOFT_CLIENT_SECRET,
        "certificate_path": settings.MICROSOFT_CERTIFICATE_PATH,
        "private_key_path": settings.MICROSOFT_PRIVATE_KEY_PATH,
    }


def has_credentials(cloud: str) -> bool:
    """An app registration is configured for this cloud (a client ID and a credential)."""
    creds = _credentials(cloud)
    return bool(
        creds.get("client_id") and (creds.get("client_secret") or creds.get("private_key_path"))
    )


def config(cloud: str = "commercial") -> Config:
    """The settings of `microsoft/` for one cloud's app registration. The only place there
    that reads Django settings, but for the call budget's limits (`budget.periods`)."""
    from django.conf import settings

    creds = _credentials(cloud)
    cert = key = ""
    if creds.get("certificate_path") and creds.get("private_key_path"):
        cert = _read(creds["certificate_path"])
        key = _read(creds["private_key_path"])
    return Config(
        client_id=creds.get("client_id", ""),
        client_secret=creds.get("client_secret", ""),
        certificate_pem=cert,
        private_key_pem=key,
        login_base_url=settings.MICROSOFT_LOGIN_BASE_URL,
        ca_bundle=settings.MICROSOFT_CA_BUNDLE,
        timeout=float(settings.MICROSOFT_HTTP_TIMEOUT),
        cache_key=settings.TOKEN_CACHE_KEY or settings.SECRET_KEY,
        defender_base_url=settings.MICROSOFT_DEFENDER_BASE_URL,
        graph_base_url=settings.MICROSOFT_GRAPH_BASE_URL,
        incident_updates=settings.MICROSOFT_INCIDENT_UPDATES,
    )


def _read(path: str) -> str:
    # Read on every call of config() (every token), so kept until the file changes.
    return _read_file(path, os.stat(path).st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_file(path: str, mtime_ns: int) -> str:
    return Path(path).read_text()


def login_base_url(cloud: str, cfg: Config | None = None) -> str:
    cfg = cfg or config(cloud)
    return get_cloud(cloud, login_base_url=cfg.login_base_url).login_base_url


def api_base_url(cloud: str, source: str, cfg: Config | None = None) -> str:
    """The base URL of the cloud's Defender API or Graph (devcloud's when overridden)."""
    cfg = cfg or config(cloud)
    hosts = get_cloud(
        cloud, defender_base_url=cfg.defender_base_url, graph_base_url=cfg.graph_base_url
    )
    return hosts.api_base_url(source)


def resource_of(cloud: str, source: str) -> str:
    """The token resource (App ID URI) of the cloud's Defender API or Graph."""
    return get_cloud(cloud).resource(source)


def is_microsoft_login(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    return host.endswith((".microsoftonline.com", ".microsoftonline.us", ".chinacloudapi.cn"))


# --- Per-process application objects ------------------------------------------------------


class _RecordingClient:
    """MSAL's `http_client`: our session (CA bundle, timeouts, trust_env off) + the last status,
    and tenant discovery documents shared through the cache.

    MSAL hands a 429 back as a plain error dict, without its Retry-After header; we keep
    the header here (per thread, apps are shared by a worker's threads) to classify it.

    MSAL keeps a discovery document per app, i.e. per process: every worker process would
    ask Entra for every tenant's. A 200 answer is kept in the cache for `DISCOVERY_SECONDS`,
    keyed by its URL (login host and tenant), and served to every process's new apps.
    """

    def __init__(self, *, timeout: float, ca_bundle: str) -> None:
        self.timeout, self.ca_bundle = timeout, ca_bundle
        self.local = threading.local()

    @property
    def session(self) -> TimeoutSession:
        # The calling thread's (an app serves whichever thread needs its tenant's token).
        return shared_session(timeout=self.timeout, ca_bundle=self.ca_bundle)

    def reset(self) -> None:
        self.local.status = None
        self.local.retry_after = None

    def _remember(self, response: requests.Response) -> requests.Response:
        self.local.status = response.status_code
        raw = response.headers.get("Retry-After", "")
        self.local.retry_after = int(raw) if raw.isdigit() else None
        return response

    def get(self, url: str, **kwargs: Any) -> requests.Response | _Document:
        discovery = url.endswith("/.well-known/openid-configuration") and not kwargs.get("params")
        if not discovery:
            return self._remember(self.session.get(url, **kwargs))
        from django.core.cache import cache

        name = _DISCOVERY_PREFIX + hashlib.sha256(url.encode()).hexdigest()
        text = cache.get(name)
        if isinstance(text, str):
            self.local.status, self.local.retry_after = 200, None
            return _Document(text)
        response = self._remember(self.session.get(url, **kwargs))
        if response.status_code == 200 and _is_json_object(response.text):
            cache.set(name, response.text, timeout=DISCOVERY_SECONDS)
        return response

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return self._remember(self.session.post(url, **kwargs))

    def close(self) -> None:
        """The session is the thread's shared one (`http.shared_session`): nothing to close."""


@dataclass
class _Document:
    """A discovery document from the cache, as MSAL reads an answer."""

    text: str
    status_code: int = 200

    @property
    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    def raise_for_status(self) -> None:
        """A 200."""


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


@dataclass
class _Entry:
    app: msal.ConfidentialClientApplication
    cache: msal.SerializableTokenCache
    http: _RecordingClient
    # One token call at a time per app: the cache is reloaded into the app before each call.
    lock: threading.Lock
    # The tenant's shared generation when the app was built (see `renew_everywhere`).
    generation: int = 0


# Least recently used first; at most APPS_PER_PROCESS.
_apps: OrderedDict[tuple[str, ...], _Entry] = OrderedDict()
_apps_lock = threading.Lock()


def _app_key(cfg: Config, cloud: str, tenant_id: str) -> tuple[str, ...]:
    return (
        cloud,
        tenant_id.lower(),
        cfg.client_id,
        login_base_url(cloud, cfg),
        cfg.credential_fingerprint,
    )


def _credential(cfg: Config) -> str | dict[str, str]:
    if cfg.private_key_pem and cfg.certificate_pem:
        # With the public certificate MSAL signs with PS256 and sends x5t#S256 (§3).
        return {"private_key": cfg.private_key_pem, "public_certificate": cfg.certificate_pem}
    if cfg.client_secret:
        return cfg.client_secret
    raise errors.CredentialInvalid(
        "No credential is configured for this cloud: set its client secret or certificate "
        "settings (README, National clouds)."
    )


def _generation_name(cloud: str, tenant_id: str) -> str:
    return f"{_GENERATION_PREFIX}{cloud}:{tenant_id.lower()}"


def _generation(cloud: str, tenant_id: str) -> int:
    from django.core.cache import cache

    value = cache.get(_generation_name(cloud, tenant_id))
    return value if isinstance(value, int) else 0


def renew_everywhere(*, tenant_id: str, cloud: str = "commercial") -> None:
    """Make every process build a fresh MSAL app for the tenant before its next token.

    MSAL replays a token-endpoint 400 from its own HTTP cache for 60 s (§5.5): after the
    customer consented again, a worker whose app saw the "no consent" answer would keep
    getting it — and put the tenant back to Revoked — though an access check in another
    process just succeeded. The shared generation (a counter in the cache) tells each
    process, before it uses its app, that the app predates the renewal.
    """
    from django.core.cache import cache

    name = _generation_name(cloud, tenant_id)
    cache.add(name, 0, timeout=None)
    try:
        cache.incr(name)
    except ValueError:  # evicted between add and incr
        cache.set(name, 1, timeout=None)


def _get_entry(cfg: Config, cloud: str, tenant_id: str) -> _Entry:
    key = _app_key(cfg, cloud, tenant_id)
    generation = _generation(cloud, tenant_id)
    with _apps_lock:
        entry = _apps.get(key)
        if entry is not None and entry.generation == generation:
            _apps.move_to_end(key)
            return entry
        if entry is not None:  # renewed elsewhere: build a fresh one
            del _apps[key]
    # Build outside the lock: the constructor may do network I/O (tenant discovery).
    base = login_base_url(cloud, cfg)
    http = _RecordingClient(timeout=cfg.timeout, ca_bundle=cfg.ca_bundle)
    cache = msal.SerializableTokenCache()
    http.reset()
    try:
        app = msal.ConfidentialClientApplication(
            cfg.client_id,
            client_credential=_credential(cfg),
            authority=f"{base}/{tenant_id}",
            http_client=http,
            token_cache=cache,
            # Instance discovery asks login.microsoftonline.com about the host: right for
            # Microsoft's hosts, a failing network call for devcloud (§0.5).
            instance_discovery=None if is_microsoft_login(base) else False,
        )
    except ValueError as exc:
        if "Unable to get authority configuration" in str(exc):
            raise _discovery_error(tenant_id, base, http) from exc
        raise _classify_exception(exc, http) from exc
    except Exception as exc:
        raise _classify_exception(exc, http) from exc
    entry = _Entry(app=app, cache=cache, http=http, lock=threading.Lock(), generation=generation)
    with _apps_lock:
        # Another thread may have built one meanwhile: keep the first, drop ours.
        existing = _apps.setdefault(key, entry)
        _apps.move_to_end(key)
        while len(_apps) > APPS_PER_PROCESS:
            _apps.popitem(last=False)  # a thread still using it keeps its reference
    return existing


def _discovery_error(tenant_id: str, base: str, http: _RecordingClient) -> errors.MicrosoftError:
    """What MSAL's "Unable to get authority configuration" means. MSAL says it for any 4xx
    and for a 200 that is not JSON; only a 4xx other than 408/429 names an unknown tenant
    (AADSTS90002, permanent). A 429, a 5xx or a broken 200 is Microsoft (or a proxy) having
    a bad moment: transient, or the tenant would be marked not found for good."""
    status = getattr(http.local, "status", None)
    if status == 429:
        retry_after = getattr(http.local, "retry_after", None) or 60
        return errors.Throttled(
            "Microsoft's sign-in service asked us to slow down (tenant discovery).",
            retry_after=retry_after,
            status=status,
        )
    if status is not None and 400 <= status < 500 and status != 408:
        return errors.TenantNotFound(f"Tenant {tenant_id} was not found at {base}.", code="90002")
    return errors.Transient(
        f"Microsoft's tenant discovery answered HTTP {status} without a usable document.",
        status=status,
    )


def forget_tenant(
    *, tenant_id: str, cloud: str = "commercial", drop_cached_tokens: bool = False
) -> None:
    """Drop this process's app for the tenant; the next call builds a fresh one.

    Needed right after a consent: MSAL replays a token-endpoint 400 from its own HTTP cache
    for 60 s (§5.5), so the old app would keep answering "no consent" without asking.

    With `drop_cached_tokens`, also delete the tenant's shared token cache entry, so that
    the next call in any process asks Entra for a new token: for a token the API refused
    (401). Other processes keep their app, but it is reloaded from the shared entry before
    every call, so none of them serves the old token again.
    """
    if drop_cached_tokens:
        from django.core.cache import cache

        cfg = config(cloud)
        resources = {resource_of(cloud, "defender"), resource_of(cloud, "graph")}
        cache.delete_many([_cache_name(cfg, cloud, tenant_id, r) for r in resources])
        renew_everywhere(tenant_id=tenant_id, cloud=cloud)
    with _apps_lock:
        for key in [k for k in _apps if k[0] == cloud and k[1] == tenant_id.lower()]:
            del _apps[key]


def forget_all() -> None:
    """Drop every per-process app (tests, and after the credentials change)."""
    with _apps_lock:
        _apps.clear()


# --- The shared, encrypted token cache -----------------------------------------------------


def _fernet(cfg: Config) -> Fernet:
    return _fernet_for(cfg.cache_key)


@functools.lru_cache(maxsize=4)
def _fernet_for(cache_key: str) -> Fernet:
    # HKDF turns any secret (TOKEN_CACHE_KEY, or SECRET_KEY) into a 32-byte Fernet key, with
    # a purpose-specific `info` so the key is never the same as one used elsewhere.
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"partner-portal token cache v1"
    ).derive(cache_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def _cache_name(cfg: Config, cloud: str, tenant_id: str, resource: str = "") -> str:
    resource = resource or resource_of(cloud, "defender")
    raw = f"{cfg.client_id}|{cloud}|{tenant_id.lower()}|{login_base_url(cloud, cfg)}|{resource}"
    return _CACHE_PREFIX + hashlib.sha256(raw.encode()).hexdigest()


def _load(cfg: Config, name: str) -> str | None:
    from django.core.cache import cache

    blob = cache.get(name)
    if not blob:
        return None
    try:
        return _fernet(cfg).decrypt(blob).decode()
    except (InvalidToken, TypeError, ValueError):
        # A rotated key or a foreign value: an empty cache is always safe.
        return None


def _save(cfg: Config, name: str, state: str, ttl: int) -> None:
    from django.core.cache import cache

    if ttl > 0:
        cache.set(name, _fernet(cfg).encrypt(state.encode()), timeout=ttl)


def _token_ttl(state: str) -> int:
    """Seconds until the latest access token in `state` expires (0 when there is none)."""
    try:
        entries = json.loads(state).get("AccessToken", {}).values()
        expires = max(int(e["expires_on"]) for e in entries)
    except (ValueError, KeyError, TypeError, AttributeError):
        return 0
    return max(0, expires - int(time.time()))


def _has_fresh_token(state: str | None) -> bool:
    return state is not None and _token_ttl(state) > _MSAL_EXPIRY_MARGIN + 5


def _cached_token(state: str | None, *, client_id: str, tenant_id: str, scope: str) -> str | None:
    """The access token MSAL would return from `state` without asking Entra, or None.

    MSAL's own rule (`_acquire_token_silent_from_cache_and_possibly_refresh_it`): this
    client's token for this tenant whose scopes include `scope`, with 5 minutes or more
    left, and not past its `refresh_on` (then MSAL asks for a new one, and so do we).
    """
    if not state:
        return None
    try:
        entries = json.loads(state).get("AccessToken", {}).values()
    except (ValueError, AttributeError):
        return None
    now = time.time()
    for entry in entries:
        try:
            if (
                entry.get("client_id") == client_id
                and str(entry.get("realm", "")).lower() == tenant_id.lower()
                and scope in str(entry.get("target", "")).split()
                and int(entry["expires_on"]) - now >= _MSAL_EXPIRY_MARGIN
                and ("refresh_on" not in entry or int(entry["refresh_on"]) >= now)
            ):
                return str(entry["secret"])
        except (AttributeError, KeyError, TypeError, ValueError):
            continue
    return None


# --- The public API --------------------------------------------------------------------------


def get_access_token(*, tenant_id: str, cloud: str = "commercial", resource: str = "") -> str:
    """An app-only access token in `tenant_id` for `resource` (default: the cloud's Defender
    API), from the cloud's app registration and login host.

    Raises a classified `errors.MicrosoftError`: ConsentRequired, CredentialInvalid,
    TenantNotFound, Throttled (with retry_after), Transient, ... The shared cache being
    unreachable (Redis down or restarting) is Transient: it says nothing about consent.
    """
    try:
        return _get_access_token(tenant_id=tenant_id, cloud=cloud, resource=resource)
    except _CACHE_ERRORS as exc:
        raise errors.Transient(
            f"The token cache is unavailable ({type(exc).__name__}); retrying."
        ) from exc


def _cache_errors() -> tuple[type[BaseException], ...]:
    from django.db import DatabaseError
    from redis.exceptions import RedisError

    return (RedisError, DatabaseError, ConnectionError, TimeoutError)


_CACHE_ERRORS = _cache_errors()


def _get_access_token(*, tenant_id: str, cloud: str, resource: str) -> str:
    cfg = config(cloud)
    resource = resource or resource_of(cloud, "defender")
    name = _cache_name(cfg, cloud, tenant_id, resource)
    state = _load(cfg, name)
    scope = f"{resource}/.default"
    token = _cached_token(state, client_id=cfg.client_id, tenant_id=tenant_id, scope=scope)
    if token is not None:
        return token  # most calls: another run (or worker) got it within the hour
    entry = _get_entry(cfg, cloud, tenant_id)
    if not _has_fresh_token(state):
        # A miss. Only one process asks Entra; the others wait for its result (bounded).
        from django.core.cache import cache

        lock = f"{name}:lock"
        if cache.add(lock, "1", timeout=int(cfg.timeout) + 10):
            try:
                state = _load(cfg, name)  # it may have arrived while we took the lock
                return _acquire(cfg, entry, name, state, resource)
            finally:
                cache.delete(lock)
        deadline = time.monotonic() + _LOCK_WAIT_SECONDS
        while time.monotonic() < deadline and cache.get(lock) is not None:
            time.sleep(0.05)
        state = _load(cfg, name)
    return _acquire(cfg, entry, name, state, resource)


def _acquire(cfg: Config, entry: _Entry, name: str, state: str | None, resource: str) -> str:
    with entry.lock:
        return _acquire_locked(cfg, entry, name, state, resource)


def _acquire_locked(cfg: Config, entry: _Entry, name: str, state: str | None, resource: str) -> str:
    entry.cache.deserialize(state)
    entry.http.reset()
    try:
        # Reference: https://learn.microsoft.com/en-us/entra/msal/python/
        result = entry.app.acquire_token_for_client(scopes=[f"{resource}/.default"])
    except Exception as exc:
        raise _classify_exception(exc, entry.http) from exc
    if not isinstance(result, dict):
        raise errors.Transient("The token endpoint returned nothing usable.")
    if "access_token" not in result:
        status = getattr(entry.http.local, "status", None)
        retry_after = getattr(entry.http.local, "retry_after", None)
        raise errors.from_token_error(result, status=status, retry_after=retry_after)
    if entry.cache.has_state_changed:
        new_state = entry.cache.serialize()
        _save(cfg, name, new_state, _token_ttl(new_state))
    return str(result["access_token"])


def _classify_exception(exc: Exception, http: _RecordingClient) -> errors.MicrosoftError:
    if isinstance(exc, errors.MicrosoftError):
        return exc
    status = getattr(http.local, "status", None)
    if isinstance(exc, requests.Timeout):
        return errors.Transient("Microsoft's sign-in service did not answer in time.")
    if isinstance(exc, requests.exceptions.SSLError):
        # Not transient: a wrong CA bundle or host does not fix itself.
        return errors.BadResponse(f"TLS verification failed: {type(exc).__name__}.")
    if isinstance(exc, requests.ConnectionError):
        return errors.Transient("Could not connect to Microsoft's sign-in service.")
    if isinstance(exc, MsalServiceError) or (status and status >= 500):
        return errors.Transient(
            f"Microsoft's sign-in service answered HTTP {status or 'error'}.", status=status
        )
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        # Truncated or garbled on the way: a passing fault, not a verdict on consent.
        return errors.Transient(
            "Microsoft's sign-in service answered something that is not JSON.", status=status
        )
    if isinstance(exc, ValueError):
        # MSAL refuses the authority itself, e.g. a login base URL that is not https.
        return errors.MicrosoftError(f"MSAL refused the configuration: {exc}"[:500])
    return errors.MicrosoftError(f"Token request failed: {type(exc).__name__}.", status=status)


def check_token(
    token: str, *, tenant_id: str, cloud: str, required_roles: list[str], resource: str = ""
) -> dict[str, Any]:
    """`claims.check_token` with this deployment's keys: signatures checked only off-Microsoft."""
    cfg = config(cloud)
    base = login_base_url(cloud, cfg)
    verify = not is_microsoft_login(base)
    return claims.check_token(
        token,
        tenant_id=tenant_id,
        resource=resource or resource_of(cloud, "defender"),
        required_roles=required_roles,
        verify_signature=verify,
        openid_configuration_url=f"{base}/{tenant_id}/v2.0/.well-known/openid-configuration",
        ca_bundle=cfg.ca_bundle,
        timeout=cfg.timeout,
    )
