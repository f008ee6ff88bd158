from __future__ import annotations

import re
from typing import Any

from django import forms

from partner_portal.consent.flow import is_guid
from partner_portal.consent.models import ConsentLink

_DOMAIN = re.compile(r"^(?=.{3,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class ConsentLinkForm(forms.Form):
    expected_tenant = forms.CharField(
        required=False,
        max_length=253,
        label="Expected tenant (optional)",
        help_text=(
            "The customer's tenant ID or domain (a domain is resolved to its tenant ID now). "
            "Microsoft then signs the administrator in to that tenant, and a consent from "
            "another tenant is refused. Without one, staff confirm the tenant that consented."
        ),
    )

    def __init__(self, *args: Any, tenant: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tenant = tenant
        if tenant.entra_tenant_id:
            self.fields["expected_tenant"].initial = str(tenant.entra_tenant_id)
        elif tenant.primary_domain:
            self.fields["expected_tenant"].initial = tenant.primary_domain

    def clean_expected_tenant(self) -> str:
        value = self.cleaned_data["expected_tenant"].strip().lower()
        if value and not (is_guid(value) or _DOMAIN.match(value)):
            raise forms.ValidationError(
                "Enter a tenant ID (a GUID) or a domain such as contoso.onmicrosoft.com."
            )
        return value


class LinkFilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False, choices=[("", "All links"), *ConsentLink.Status.choices]
    )
