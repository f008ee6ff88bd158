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
                # Neutral: it must not tell staff that a tenant they may not see exists (L5).
                "unique": "This tenant ID cannot be used for this customer.",
            }
        }

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        if not user.is_superuser:
            # The Entra tenant ID comes from a completed consent link; only a superuser may
            # type or change it (M2): any consented tenant would otherwise be one edit away.
            del self.fields["entra_tenant_id"]
        else:
            self.fields["entra_tenant_id"].help_text = (
                "Normally set by a completed consent link. Changing it clears the consent, "
                "the granted permissions, the sync watermark and the old tenant's incidents."
            )
        self.fields["groups"].queryset = assignable_groups(user)
        self.fields["groups"].required = not user.is_superuser
        self.fields["groups"].help_text = "Staff in these groups see this customer."
        if self.instance.pk:
            self.initial["groups"] = list(
                self.instance.groups.filter(pk__in=self.fields["groups"].queryset)
            )

    def clean_entra_tenant_id(self):
        value = self.cleaned_data["entra_tenant_id"]
        other = Tenant.objects.filter(entra_tenant_id=value).exclude(pk=self.instance.pk).first()
        if value and other is not None:
            # Only superusers edit this field, and they see every tenant: say which one.
            raise forms.ValidationError(f"{other.display_name} already has this tenant ID.")
        return value

    @property
    def changes_entra_tenant_id(self) -> bool:
        """Whether saving replaces a known tenant ID (which needs a confirmation)."""
        return (
            "entra_tenant_id" in self.changed_data
            and self.initial.get("entra_tenant_id") is not None
            and self.instance.pk is not None
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
