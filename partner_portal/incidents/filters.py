"""The dashboard's filters: every one lives in the URL's query string (GET form)."""

from __future__ import annotations

import copy
import functools
import re
from datetime import date, datetime, time, timedelta

import django_filters
from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.lookups import Lookup
from django.db.models.query import EmptyQuerySet
from django.http import QueryDict
from django.utils import timezone

from partner_portal.incidents.models import Incident, IncidentSearch, assignee_is
from partner_portal.microsoft import vocabulary
from partner_portal.microsoft.vocabulary import Kind
from partner_portal.tenants.access import sees_every_tenant, visible_tenants

# Stored values are `vocabulary`'s canonical spellings; the labels are its words.
SEVERITIES = vocabulary.choices(Kind.SEVERITY)
OPEN = "open"
STATUSES = [
    (OPEN, "Open (active, in progress or awaiting action)"),
    *vocabulary.choices(Kind.STATUS),
]
CLASSIFICATIONS = vocabulary.choices(Kind.CLASSIFICATION)
DETERMINATIONS = vocabulary.choices(Kind.DETERMINATION)
UNASSIGNED = "unassigned"
UPDATED_WITHIN = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
SORTS = [
    ("-updated", "Last update, newest first"),
    ("updated", "Last update, oldest first"),
    ("-created", "Created, newest first"),
    ("created", "Created, oldest first"),
    ("-severity", "Severity, highest first"),
    ("severity", "Severity, lowest first"),
]
DEFAULT_SORT = "-updated"
# A staff member's search goes through the per-tenant trigram index up to this many
# tenants (one small index scan each); beyond, the plain trigram index is cheaper.
MAX_KEYED_TENANTS = 200


# Dates a filter accepts. 9999-12-31 + one day (the "to" day is inclusive) overflows
# Python's datetime, a 500 before (L3); nothing Microsoft stores is outside these years.
MIN_DATE = date(1970, 1, 1)
MAX_DATE = date(9998, 12, 31)


class DayFilter(django_filters.DateFilter):
    """A date filter whose field refuses days outside MIN_DATE..MAX_DATE (a form error)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("widget", forms.DateInput(attrs={"type": "date"}))
        kwargs["validators"] = [
            MinValueValidator(MIN_DATE, message=f"Enter a date from {MIN_DATE:%Y-%m-%d} on."),
            MaxValueValidator(MAX_DATE, message=f"Enter a date up to {MAX_DATE:%Y-%m-%d}."),
        ]
        super().__init__(*args, **kwargs)


class TenantFilter(django_filters.ModelMultipleChoiceFilter):
    """The tenant filter. With no tenant chosen the form field's value is `queryset.none()`,
    and django-filter's `if not value` evaluated that queryset on every list request: the
    tenant query compiled only to find it empty (~10% of a list page's CPU with the views'
    filter sets). A `none()` queryset is known to be empty without compiling it."""

    def filter(self, qs: QuerySet, value) -> QuerySet:
        if isinstance(value, EmptyQuerySet):
            return qs
        return super().filter(qs, value)


def _tenant_choices(request) -> QuerySet:
    """The user's tenants, built once per request: the list's form and each view's ask."""
    if request is None:
        return visible_tenants(None)
    tenants = getattr(request, "_visible_tenants", None)
    if tenants is None:
        tenants = request._visible_tenants = visible_tenants(request.user)
    return tenants


def _start_of_day(day) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


class IncidentFilter(django_filters.FilterSet):
    # distinct=False: each incident has one tenant and one severity, so these filters can't
    # duplicate rows, and SELECT DISTINCT would defeat the sort's index.
    tenant = TenantFilter(
        queryset=_tenant_choices,
        distinct=False,
        widget=forms.SelectMultiple(attrs={"size": 4}),
    )
    severity = django_filters.MultipleChoiceFilter(
        choices=SEVERITIES, widget=forms.CheckboxSelectMultiple, distinct=False
    )
    status = django_filters.ChoiceFilter(
        choices=STATUSES, method="filter_status", empty_label="Any status"
    )
    classification = django_filters.ChoiceFilter(
        choices=CLASSIFICATIONS, empty_label="Any classification"
    )
    determination = django_filters.ChoiceFilter(
        choices=DETERMINATIONS, empty_label="Any determination"
    )
    assigned_to = django_filters.CharFilter(
        method="filter_assigned_to",
        label="Assigned to",
        help_text='An e-mail address, or "unassigned".',
    )
    updated = django_filters.ChoiceFilter(
        choices=[(key, f"Last {key}") for key in UPDATED_WITHIN],
        method="filter_updated",
        label="Updated within",
        empty_label="Any time",
    )
    updated_from = DayFilter(
        method="filter_updated_from",
        label="Updated from",
    )
    updated_to = DayFilter(
        method="filter_updated_to",
        label="Updated to",
    )
    # The summary chart's bars link here: one day's created incidents.
    created_from = DayFilter(
        method="filter_created_from",
        label="Created from",
    )
    created_to = DayFilter(
        method="filter_created_to",
        label="Created to",
    )
    q = django_filters.CharFilter(
        method="filter_search",
        label="Search",
        help_text="Incident numbers and names, alert titles, device and user names.",
    )

    sort = django_filters.ChoiceFilter(
        choices=SORTS, method="keep_order", label="Sort by", empty_label=None
    )

    class Meta:
        model = Incident
        fields: list[str] = []

    def __init__(self, data=None, queryset=None, *, request=None, prefix=None) -> None:
        # django-filter's own __init__ with a cheaper copy: the list builds a filter set for
        # itself and one per view (each view shows its count), and deep-copying every
        # filter (their choices, widgets and querysets) cost ~1 ms each time. A shallow
        # copy with its own `extra` is enough: a filter keeps nothing else per request
        # (the form field it builds goes into `extra` and `_field`, made after this).
        # Its attributes are copied as a dict: copy.copy() took twice as long.
        if queryset is None:
            queryset = self._meta.model._default_manager.all()
        self.is_bound = data is not None
        self.data = data or QueryDict()
        self.queryset = queryset
        self.request = request
        self.form_prefix = prefix
        self.filters = {}
        for name, base in self.base_filters.items():
            filter_ = object.__new__(type(base))
            filter_.__dict__.update(base.__dict__, extra=dict(base.extra))
            if base.method is not None:
                filter_.method = base.method  # binds a new FilterMethod to this copy
            filter_.model, filter_.parent = queryset.model, self
            self.filters[name] = filter_

    # Whether the search went through the per-tenant trigram keys (`_in_visible_tenants`).
    keyed_search = False

    def get_form_class(self):
        # One form class per process: django-filter builds a class and its 13 fields for
        # each filter set, and they are the same for everyone but the tenant field's
        # choices, which `form` sets on each form for its user.
        return _form_class()

    @property
    def form(self):
        if not hasattr(self, "_form"):
            # Only the user's own tenants are valid choices: another tenant's ID is a form error.
            super().form.fields["tenant"].queryset = _tenant_choices(self.request)
        return self._form

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        # Fail closed: django-filter skips an invalid field and filters by the others, so
        # `?tenant=999` or `?severity=high` listed (and exported) every incident beside the
        # form error. Any invalid filter now means no incidents, only the error. (An unknown
        # sort is not a filter: the list falls back to the default order.)
        if any(name != "sort" for name in self.form.errors):
            return queryset.none()
        return super().filter_queryset(queryset)

    def keep_order(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # Ordering and paging are the list's job (keyset pages); the field is here so that
        # the sort lives in the same GET form and URL as the filters.
        return queryset

    @property
    def chosen_sort(self) -> str:
        self.form.is_valid()  # validates once (cached by the form), as .qs does
        return getattr(self.form, "cleaned_data", {}).get("sort") or DEFAULT_SORT

    def filter_status(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value == OPEN:
            # Known open statuses only: a status Microsoft adds later is not open by accident.
            return queryset.filter(status__in=vocabulary.OPEN_STATUSES)
        return queryset.filter(status=value)

    def filter_assigned_to(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        if value.lower() == UNASSIGNED:
            return queryset.filter(assigned_to="")
        return queryset.filter(assignee_is(value))

    def filter_updated(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(last_update_time__gte=timezone.now() - UPDATED_WITHIN[value])

    def filter_updated_from(self, queryset: QuerySet, name: str, value) -> QuerySet:
        return queryset.filter(last_update_time__gte=_start_of_day(value))

    def filter_updated_to(self, queryset: QuerySet, name: str, value) -> QuerySet:
        # Inclusive of the whole "to" day.
        return queryset.filter(last_update_time__lt=_start_of_day(value + timedelta(days=1)))

    def filter_created_from(self, queryset: QuerySet, name: str, value) -> QuerySet:
        return queryset.filter(created_time__gte=_start_of_day(value))

    def filter_created_to(self, queryset: QuerySet, name: str, value) -> QuerySet:
        # Inclusive of the whole "to" day.
        return queryset.filter(created_time__lt=_start_of_day(value + timedelta(days=1)))

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # The words are stored lower-cased (IncidentSearch), so a case-sensitive LIKE on the
        # lower-cased term is a case-insensitive search that PostgreSQL's pg_trgm GIN index
        # can serve (Django's icontains wraps both sides in UPPER(), which it can't use).
        value = value.strip().lower()
        if not value:
            return queryset
        matches = Q(search__text__contains=value)
        keyed = self._in_visible_tenants(value)
        if keyed is not None:
            narrowed, tenants = keyed
            matches &= Q(narrowed)
            queryset = tenants_listed(queryset, tenants)
            self.keyed_search = True
        # An incident number (as Defender shows it, perhaps with its "#") finds that incident.
        number = value.removeprefix("#")
        if number.isascii() and number.isdigit() and len(number) <= 18:
            matches |= Q(microsoft_id=int(number))
        return queryset.filter(matches)

    def _in_visible_tenants(self, value: str) -> tuple[RawSQL, list[int]] | None:
        """For staff who see some tenants (PostgreSQL): the incidents of those tenants whose
        text has every trigram of the term, through the per-tenant trigram index (migrations
        0011 and 0014), so that a common word costs the matches in these tenants, not in all;
        with those tenants' primary keys.

        None when it does not apply: everyone's search (the plain trigram index serves it),
        many tenants, or a term without three letters or digits in a row. The LIKE beside it
        still decides: having the trigrams is necessary, not sufficient."""
        if connection.vendor != "postgresql" or self.request is None:
            return None
        user = self.request.user
        if sees_every_tenant(user):
            return None
        trigrams = sorted(search_trigrams(value))
        tenants = list(visible_tenants(user).values_list("pk", flat=True)[: MAX_KEYED_TENANTS + 1])
        if not trigrams or not tenants or len(tenants) > MAX_KEYED_TENANTS:
            return None
        # The words' table joined by `search__text` above, under its own name.
        table = connection.ops.quote_name(IncidentSearch._meta.db_table)
        keys = f"incident_search_word_keys({table}.tenant_id, {table}.text) @> %s::text[]"
        sql = " OR ".join([keys] * len(tenants))
        params = [[f"{pk}:{trigram}" for trigram in trigrams] for pk in tenants]
        return RawSQL(f"({sql})", params, output_field=BooleanField()), tenants  # noqa: S611


class AccessRule(RawSQL):
    """The access rule's subquery of a staff user's tenants (`dashboard.visible_incidents`),
    a class of its own so that `tenants_listed` can find it."""


def tenants_listed(queryset: QuerySet, tenants: list[int]) -> QuerySet:
    """`queryset` with its access rule (`AccessRule`) replaced by what it selects, `tenants`:
    the user's visible tenants, read by the same rule in this request.

    For a keyed search (`_in_visible_tenants`): PostgreSQL estimates one match for the
    per-tenant keys (there are thousands for a common word), so it checks each match against
    the rule's 50 tenants one by one (a nested loop); a list of numbers is one hash lookup
    a match (~6 ms less for the page's query and ~2 ms for each capped count, at 3,300
    matches). Not for every list: there the rule's join is what PostgreSQL plans best."""
    listed = queryset.all()
    children = listed.query.where.children
    for n, child in enumerate(children):
        if isinstance(child, Lookup) and isinstance(child.rhs, AccessRule):
            children[n] = type(child)(child.lhs, list(tenants))
    return listed


@functools.cache
def _form_class() -> type[forms.Form]:
    """IncidentFilter's form class, its tenant field without choices (an empty queryset)."""
    form_class = super(IncidentFilter, IncidentFilter()).get_form_class()
    form_class.base_fields = _SharedFields(form_class.base_fields)
    return form_class


class _SharedFields(dict):
    """Form fields that every form of the class shares, instead of a deep copy each.

    Django gives each form a deep copy of `base_fields` so that a form may change its own
    fields; these forms only validate and read them (threads share them read-only), except
    the tenant field, which `IncidentFilter.form` gives the user's tenants: that one is
    copied. The list page builds a form for itself and one per view, and the copies cost
    ~10% of its CPU."""

    def __deepcopy__(self, memo: dict) -> dict:
        fields = dict(self)
        fields["tenant"] = copy.deepcopy(self["tenant"], memo)
        return fields


def search_trigrams(value: str) -> set[str]:
    """Trigrams every text containing `value` has in pg_trgm's show_trgm(): those inside
    runs of ASCII letters and digits (pg_trgm splits words at anything else; a non-ASCII
    letter may or may not split one, so no trigram spans it)."""
    return {
        word[i : i + 3] for word in re.findall(r"[a-z0-9]+", value) for i in range(len(word) - 2)
    }
