"""The fixtures other tests use: devcloud_settings points the portal at devcloud."""

from __future__ import annotations

import msal
import pytest

pytestmark = pytest.mark.integration


def test_devcloud_settings_registers_an_app_the_portal_settings_can_use(
    settings, devcloud, devcloud_settings
):
    assert devcloud.base_url == settings.MICROSOFT_LOGIN_BASE_URL
    assert devcloud.base_url == settings.MICROSOFT_DEFENDER_BASE_URL
    assert devcloud.ca_file == settings.MICROSOFT_CA_BUNDLE
    assert devcloud_settings["client_id"] == settings.MICROSOFT_CLIENT_ID
    assert devcloud_settings["redirect_uris"] == [settings.PUBLIC_BASE_URL + "/consent/callback/"]
    assert devcloud_settings["required_permissions"] == ["Incident.Read.All"]
    tenant = devcloud.create_tenant()
    devcloud.set_consent(tenant["tenant_id"], settings.MICROSOFT_CLIENT_ID)
    app = msal.ConfidentialClientApplication(
        settings.MICROSOFT_CLIENT_ID,
        client_credential=settings.MICROSOFT_CLIENT_SECRET,
        authority=f"{settings.MICROSOFT_LOGIN_BASE_URL}/{tenant['tenant_id']}",
        http_client=devcloud.session(),
        instance_discovery=False,
    )
    result = app.acquire_token_for_client(["https://api.security.microsoft.com/.default"])
    assert "access_token" in result, result


def test_each_test_starts_from_a_reset_devcloud(devcloud):
    assert devcloud.tenants() == []
    assert devcloud.requests_log()["total"] == 0
    assert devcloud.faults() == []
    assert devcloud.limits() == {
        "per_minute": 50,
        "per_hour": 1500,
        "token_lifetime": 3599,
        "code_lifetime": 600,
        "clock_offset": 0,
    }
