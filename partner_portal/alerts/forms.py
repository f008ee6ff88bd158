from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib.auth.models import Group
from django.core.validators import validate_email

from partner_portal.alerts import destinations
from partner_portal.alerts.access import visible_channels
from partner_portal.alerts.models import Channel, ChannelKind, Rule, RuleScope
from partner_portal.incidents.models import ChangeKind
from partner_portal.tenants.access import visible_tenants


class RuleForm(forms.ModelForm):
    kinds = forms.MultipleChoiceField(
        label="Tell about",
        choices=ChangeKind.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[ChangeKind.NEW, ChangeKind.SEVERITY_RAISED, ChangeKind.REOPENED],
    )

    class Meta:
        model = Rule
        fields = [
            "name",
            "scope",
            "tenants",
            "group",
            "kinds",
            "min_severity",
            "text",
            "channels",
            "digest_minutes",
            "is_active",
        ]
        widgets = {
            "tenants": forms.CheckboxSelectMultiple,
            "channels": forms.CheckboxSelectMultiple,
            "scope": forms.RadioSelect,
        }

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only what the user may see: a rule can't reach beyond its creator's tenants.
        self._choices("tenants").queryset = visible_tenants(user).order_by("display_name")
        self._choices("group").queryset = (
            Group.objects.all() if user.is_superuser else user.groups.all()
        ).order_by("name")
        self._choices("channels").queryset = visible_channels(user)
        self.fields["digest_minutes"].widget.attrs["min"] = 0

    def _choices(self, name: str) -> forms.ModelChoiceField:
        field = self.fields[name]
        assert isinstance(field, forms.ModelChoiceField)  # noqa: S101 (a ModelForm's FK/M2M)
        return field

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        scope = data.get("scope")
        if scope == RuleScope.TENANTS and not data.get("tenants"):
            self.add_error("tenants", "Choose at least one tenant.")
        if scope == RuleScope.GROUP and not data.get("group"):
            self.add_error("group", "Choose a group.")
        if data.get("digest_minutes", 0) > 24 * 60:
            self.add_error("digest_minutes", "At most once a day (1440 minutes).")
        return data


class ChannelForm(forms.ModelForm):
    url = forms.URLField(
        label="Webhook URL",
        required=False,
        max_length=2000,
        assume_scheme="https",
        help_text="Kept encrypted and never shown again. Leave empty to keep the current one.",
    )

    class Meta:
        model = Channel
        fields = ["name", "kind", "recipients", "url"]
        widgets = {"recipients": forms.Textarea(attrs={"rows": 3})}

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        if kind == ChannelKind.EMAIL:
            addresses = [
                a.strip()
                for a in (data.get("recipients") or "").replace(",", "\n").splitlines()
                if a.strip()
            ]
            if not addresses:
                self.add_error("recipients", "Give at least one email address.")
            for address in addresses:
                try:
                    validate_email(address)
                except forms.ValidationError:
                    self.add_error("recipients", f"Not an email address: {address}")
        elif kind and not data.get("url") and not self.instance.url_encrypted:
            self.add_error("url", "Give the webhook URL.")
        elif kind in (ChannelKind.SLACK, ChannelKind.TEAMS) and data.get("url"):
            import apprise

            plugin = apprise.Apprise.instantiate(data["url"])
            if plugin is None:
                self.add_error("url", f"Not a {ChannelKind(kind).label} URL.")
            elif kind == ChannelKind.TEAMS:
                self._check_destination(lambda: destinations.check_host(plugin.host, plugin.port))
        elif kind == ChannelKind.WEBHOOK and data.get("url"):
            self._check_destination(lambda: destinations.check_url(data["url"]))
        return data

    def _check_destination(self, check: Callable[[], None]) -> None:
        try:
            check()
        except destinations.PrivateDestination as exc:
            self.add_error("url", f"Alerts go to public internet addresses only: {exc}.")
