"""TEMPORARY stand-in for the consent branch's token broker (same signature), so that the
sync can be tested before that branch lands. Replaced by the consent branch's tokens.py on
merge: take theirs."""

from __future__ import annotations

import threading

import msal
import requests
from django.conf import settings

from partner_portal.microsoft import clouds, errors
from partner_portal.microsoft.http import new_session

_apps: dict[tuple[str, str, str], msal.ConfidentialClientApplication] = {}
_lock = threading.Lock()


def _app(tenant_id: str, cloud: str) -> msal.ConfidentialClientApplication:
    key = (tenant_id, cloud, settings.MICROSOFT_CLIENT_ID)
    with _lock:
        app = _apps.get(key)
        if app is None:
            login = clouds.get_cloud(cloud, login_base_url=settings.MICROSOFT_LOGIN_BASE_URL)
            app = msal.ConfidentialClientApplication(
                settings.MICROSOFT_CLIENT_ID,
                client_credential=settings.MICROSOFT_CLIENT_SECRET,
                authority=f"{login.login_base_url}/{tenant_id}",
                http_client=new_session(
                    timeout=settings.MICROSOFT_HTTP_TIMEOUT,
                    ca_bundle=settings.MICROSOFT_CA_BUNDLE,
                ),
                instance_discovery=False,
            )
            _apps[key] = app
        return app


def get_access_token(*, tenant_id: str, cloud: str = "commercial") -> str:
    try:
        result = _app(tenant_id, cloud).acquire_token_for_client(
            scopes=[f"{clouds.DEFENDER_RESOURCE}/.default"]
        )
    except requests.RequestException as exc:
        raise errors.Transient(f"Token request failed: {type(exc).__name__}") from exc
    if "access_token" in result:
        return result["access_token"]
    raise errors.from_token_error(result)


def forget_tenant(*, tenant_id: str, cloud: str = "commercial") -> None:
    with _lock:
        _apps.pop((tenant_id, cloud, settings.MICROSOFT_CLIENT_ID), None)
