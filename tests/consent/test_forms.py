from __future__ import annotations

import pytest
from django.core.management import call_command

from partner_portal.consent.forms import ConsentLinkForm
from partner_portal.tenants.forms import TenantForm


@pytest.mark.parametrize(
    ("value", "cleaned"),
    [
        ("", ""),
        ("  Contoso.OnMicrosoft.com ", "contoso.onmicrosoft.com"),
        ("72F988BF-86F1-41AF-91AB-2D7CD011DB47", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
    ],
)
def test_the_expected_tenant_takes_a_guid_or_a_domain(customer, value, cleaned):
    form = ConsentLinkForm({"expected_tenant": value}, tenant=customer)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["expected_tenant"] == cleaned


@pytest.mark.parametrize("value", ["not a domain", "contoso", "https://contoso.com", "a" * 254])
def test_anything_else_is_refused(customer, value):
    assert not ConsentLinkForm({"expected_tenant": value}, tenant=customer).is_valid()


def test_the_expected_tenant_defaults_to_what_is_known(customer, tenant_a):
    customer.primary_domain = "northwind.example"
    assert ConsentLinkForm(tenant=customer)["expected_tenant"].initial == "northwind.example"
    assert ConsentLinkForm(tenant=tenant_a)["expected_tenant"].initial == str(
        tenant_a.entra_tenant_id
    )


def test_the_tenant_form_normalises_the_domain_and_checks_it(alice, team_a):
    data = {"display_name": "X", "cloud": "commercial", "groups": [team_a.pk]}
    good = TenantForm({**data, "primary_domain": " X.Example "}, user=alice)
    assert good.is_valid(), good.errors
    assert good.cleaned_data["primary_domain"] == "x.example"
    assert not TenantForm({**data, "primary_domain": "no spaces.com"}, user=alice).is_valid()


def test_the_check_access_command_runs_the_check(customer, capsys):
    call_command("check_access", str(customer.pk))
    customer.refresh_from_db()
    assert customer.consent_state == "not_consented"
    assert "send a consent link first" in capsys.readouterr().out
