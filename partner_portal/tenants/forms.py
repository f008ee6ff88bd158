from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import Group

from partner_portal.tenants.models import Tenant


def assignable_groups(user: Any):
    """Groups a user may give a tenant to: their own, or any for a superuser."""
    if user.is_superuser:
        return Group.objects.order_by("name")
    return user.groups.order_by("name")


class TenantForm(forms.ModelForm):
    """Create or edit a tenant; `groups` offers only the user's own groups.

    Groups the user does not belong to stay on the tenant when they edit it (they could
    not see them in the form, so they cannot have meant to remove them).
    """

    class Meta:
        model = Tenant
        fields = [
            "display_name",
            "primary_domain",
            "entra_tenant_id",
            "cloud",
            "groups",
            "sync_enabled",
            "notes",
        ]
        widgets = {
            "groups": forms.CheckboxSelectMultiple,
            "notes": forms.Textarea(attrs={"rows": 4}),
        }
        help_texts = {
            "entra_tenant_id": ("The customer's tenant ID (a GUID); the consent fills it in."),
            "primary_domain": "For example contoso.onmicrosoft.com.",
        }
        error_messages = {
            "entra_tenant_id": {
                "invalid": "Enter a tenant ID such as 72f988bf-86f1-41af-91ab-2d7cd011db47.",
                "unique": "Another customer already has this tenant ID.",
            }
        }

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["groups"].queryset = assignable_groups(user)
        self.fields["groups"].required = not user.is_superuser
        self.fields["groups"].help_text = "Staff in these groups see this customer."
        if self.instance.pk:
            self.initial["groups"] = list(
                self.instance.groups.filter(pk__in=self.fields["groups"].queryset)
            )

    def clean_display_name(self) -> str:
        name = " ".join(self.cleaned_data["display_name"].split())
        # Two customers of one name can't be told apart in lists and filters; "contoso" and
        # "Contoso" are the same name.
        taken = Tenant.objects.filter(display_name__iexact=name).exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError(
                "Another customer already has this name. Add something that tells them apart, "
                "such as the city or the domain."
            )
        return name

    def clean_primary_domain(self) -> str:
        domain = self.cleaned_data["primary_domain"].strip().lower()
        if domain and ("." not in domain or " " in domain or "/" in domain):
            raise forms.ValidationError("Enter a domain such as contoso.onmicrosoft.com.")
        return domain

    def save(self, commit: bool = True) -> Tenant:
        tenant = super().save(commit=False)
        if commit:
            tenant.save()
            chosen = set(self.cleaned_data["groups"])
            offered = set(self.fields["groups"].queryset)
            hidden = set(tenant.groups.all()) - offered
            tenant.groups.set(chosen | hidden)
        return tenant


class TenantFilterForm(forms.Form):
    q = forms.CharField(required=False, label="Search", max_length=200)
    consent_state = forms.ChoiceField(
        required=False,
        label="Consent",
        choices=[("", "Any consent state"), *Tenant.ConsentState.choices],
    )
    health = forms.ChoiceField(
        required=False,
        choices=[("", "Any health"), *Tenant.Health.choices],
    )
