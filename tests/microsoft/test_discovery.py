"""A domain → its tenant ID, through the public OpenID discovery document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses

from partner_portal.microsoft import discovery, errors

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "microsoft"
LOGIN = "https://login.microsoftonline.com"


@pytest.mark.integration
def test_devcloud_names_the_tenant_of_a_domain_in_the_issuer(devcloud):
    tenant = devcloud.create_tenant(domain="northwind.onmicrosoft.com")
    found = discovery.tenant_id_for_domain(
        "northwind.onmicrosoft.com", login_base_url=devcloud.base_url, ca_bundle=devcloud.ca_file
    )
    assert found == tenant["tenant_id"]


@pytest.mark.integration
def test_devcloud_answers_an_unknown_domain_with_aadsts90002(devcloud):
    with pytest.raises(errors.TenantNotFound) as caught:
        discovery.tenant_id_for_domain(
            "nobody.onmicrosoft.com", login_base_url=devcloud.base_url, ca_bundle=devcloud.ca_file
        )
    assert caught.value.code == "90002"


@responses.activate
def test_microsofts_recorded_aadsts90002_is_tenant_not_found():
    body = json.loads((FIXTURES / "entra-discovery-error-aadsts90002.json").read_text())
    responses.get(f"{LOGIN}/tenant/v2.0/.well-known/openid-configuration", json=body, status=400)
    with pytest.raises(errors.TenantNotFound):
        discovery.tenant_id_for_domain("tenant", login_base_url=LOGIN)


@pytest.mark.parametrize(
    "body",
    [{"issuer": "https://login.microsoftonline.com/{tenantid}/v2.0"}, {}, [], {"issuer": 7}],
    ids=["placeholder", "no-issuer", "list", "number"],
)
@responses.activate
def test_a_document_without_a_tenant_in_its_issuer_is_a_bad_response(body):
    responses.get(f"{LOGIN}/x.example/v2.0/.well-known/openid-configuration", json=body)
    with pytest.raises(errors.BadResponse):
        discovery.tenant_id_for_domain("x.example", login_base_url=LOGIN)


@responses.activate
def test_a_5xx_is_transient():
    responses.get(f"{LOGIN}/x.example/v2.0/.well-known/openid-configuration", status=503)
    with pytest.raises(errors.Transient):
        discovery.tenant_id_for_domain("x.example", login_base_url=LOGIN)
