from __future__ import annotations

import zoneinfo
from functools import cache

from django import forms

from partner_portal.incidents.models import Preference


@cache
def time_zone_choices() -> list[tuple[str, str]]:
    names = sorted(zoneinfo.available_timezones() - {"localtime", "Factory"})
    return [(name, name.replace("_", " ")) for name in names]


class SavedViewForm(forms.Form):
    name = forms.CharField(max_length=80, strip=True)
    query = forms.CharField(max_length=2000, required=False, strip=False)
    default = forms.BooleanField(required=False, label="Open this view by default")


class PreferenceForm(forms.ModelForm):
    time_zone = forms.TypedChoiceField(choices=time_zone_choices, label="Time zone")

    class Meta:
        model = Preference
        fields = ["time_zone"]
