from __future__ import annotations

import functools
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.utils import timezone

from partner_portal import raw_sql
from partner_portal.microsoft import errors, tokens
from partner_portal.microsoft.claims import missing_roles
from partner_portal.microsoft.client import IncidentClient, client_class, required_roles
from partner_portal.microsoft.clouds import get_cloud


class Cloud(models.TextChoices):
    COMMERCIAL = "commercial", "Commercial"
    GCC = "gcc", "GCC"
    GCC_HIGH = "gcc_high", "GCC High"
    DOD = "dod", "DoD"


class Source(models.TextChoices):
    """Where a tenant's incidents are read: the same incidents, IDs and alerts either way."""

    DEFENDER = "defender", "Microsoft 365 Defender API"
    GRAPH = "graph", "Microsoft Graph security API"


def default_source() -> str:
    return settings.MICROSOFT_DEFAULT_SOURCE


class ConsentState(models.TextChoices):
    NOT_CONSENTED = "not_consented", "Not consented"
    PENDING = "pending", "Pending verification"
    CONSENTED = "consented", "Consented"
    MISSING_PERMISSIONS = "missing_permissions", "Missing permissions"
    FAILED = "failed", "Failed"
    REVOKED = "revoked", "Revoked"


class Health(models.TextChoices):
    """How a tenant is doing, at a glance; `attention` sorts first."""

    ATTENTION = "attention", "Needs attention"
    WAITING = "waiting", "Waiting for consent"
    OK = "ok", "Healthy"
    DISABLED = "disabled", "Disabled"


ATTENTION_STATES = (
    ConsentState.FAILED,
    ConsentState.MISSING_PERMISSIONS,
    ConsentState.REVOKED,
)
WAITING_STATES = (ConsentState.NOT_CONSENTED, ConsentState.PENDING)


def health_condition(health: str) -> Q:
    """The filter for one `Health` value (the same rules as `Tenant.health`)."""
    attention = Q(consent_state__in=ATTENTION_STATES) | Q(last_sync_outcome="failed")
    if health == Health.DISABLED:
        return Q(is_active=False)
    if health == Health.ATTENTION:
        return Q(is_active=True) & attention
    if health == Health.WAITING:
        return Q(is_active=True, consent_state__in=WAITING_STATES) & ~attention
    return Q(is_active=True) & ~attention & ~Q(consent_state__in=WAITING_STATES)


def with_health_rank(tenants: QuerySet[Tenant]) -> QuerySet[Tenant]:
    """Annotate `health_rank` (0 = needs attention … 3 = disabled) for sorting."""
    return tenants.annotate(
        health_rank=Case(
            When(health_condition(Health.ATTENTION), then=Value(0)),
            When(health_condition(Health.WAITING), then=Value(1)),
            When(health_condition(Health.OK), then=Value(2)),
            default=Value(3),
            output_field=IntegerField(),
        )
    )


class TenantQuerySet(models.QuerySet):
    def syncable(self) -> TenantQuerySet:
        """Enabled, syncing and consented (the same rules as `Tenant.is_syncable`)."""
        return self.filter(
            is_active=True,
            sync_enabled=True,
            entra_tenant_id__isnull=False,
            consent_state=ConsentState.CONSENTED,
        )

    def lease_free(self, now: datetime) -> TenantQuerySet:
        """Not held by a sync (running, or waiting out a retry's countdown)."""
        return self.filter(_lease_free(now))


def _lease_free(now: datetime) -> Q:
    return Q(sync_lease_until__isnull=True) | Q(sync_lease_until__lt=now)


def lease_seconds() -> int:
    """How long a sync holds its tenant without renewing: short, since a live run renews it
    every page and while it waits on a slow call; a dead worker's tenant is free again
    within one lease."""
    return settings.SYNC_LEASE_SECONDS


class Tenant(models.Model):
    """A customer's Microsoft 365 tenant that the MSP looks after.

    Staff see a tenant when they belong to one of its `groups` (superusers see all); the
    rule lives in `tenants.access`. Consent, token checks and sync write their outcome here
    so the tenant page can say what is wrong and how to fix it.

    Every change of its state goes through a method below, each a conditional UPDATE where
    runs can race: the sync lease, the watermark, a sync's outcome, what an access check or
    an API error says about consent, the Entra tenant attached after consent, enabled or not.
    """

    Cloud = Cloud
    Source = Source
    ConsentState = ConsentState
    Health = Health

    display_name = models.CharField(max_length=200)
    entra_tenant_id = models.UUIDField(
        "Entra tenant ID",
        null=True,
        blank=True,
        unique=True,
        help_text="Known once consented.",
    )
    primary_domain = models.CharField(max_length=253, blank=True)
    cloud = models.CharField(max_length=16, choices=Cloud, default=Cloud.COMMERCIAL)
    source = models.CharField(
        "incident source", max_length=16, choices=Source, default=default_source
    )
    groups = models.ManyToManyField(
        Group,
        blank=True,
        related_name="tenants",
        help_text="Staff groups that may see it.",
    )
    notes = models.TextField(blank=True)
    is_active = models.BooleanField("enabled", default=True)

    consent_state = models.CharField(
        max_length=24, choices=ConsentState, default=ConsentState.NOT_CONSENTED
    )
    granted_roles = models.JSONField(default=list, blank=True)
    # Classified error (a class name from partner_portal.microsoft.errors) + its message.
    consent_error_class = models.CharField(max_length=64, blank=True)
    consent_error_message = models.TextField(blank=True)
    consent_checked_at = models.DateTimeField(null=True, blank=True)

    sync_enabled = models.BooleanField(default=True)
    incidents_watermark = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Newest lastUpdateTime received (Microsoft's clock).",
    )
    sync_lease_until = models.DateTimeField(
        null=True, blank=True, help_text="A sync holds this tenant until then."
    )
    sync_lease_token = models.CharField(
        max_length=32, blank=True, help_text="The run holding the lease (its fencing value)."
    )
    sync_follow_up = models.CharField(
        max_length=8,
        blank=True,
        help_text="'sync' or 'full': requested while a sync was running, to run after it.",
    )
    last_sync_at = models.DateTimeField(null=True, blank=True)
    last_sync_outcome = models.CharField(max_length=16, blank=True)
    last_sync_error_class = models.CharField(max_length=64, blank=True)
    last_sync_error_message = models.TextField(blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    # Set by take_sync_lease.
    took_over_lease = False
    lease_read: tuple[Any, ...] = ()
    # The follow-up requested of the run that just ended, as its end read it (end_sync_run).
    _follow_up_at_end: str | None = None

    class Meta:
        ordering = ["display_name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(consent_state__in=ConsentState.values),
                name="tenant_consent_state_valid",
            ),
            models.CheckConstraint(condition=Q(cloud__in=Cloud.values), name="tenant_cloud_valid"),
            models.CheckConstraint(
                condition=Q(source__in=Source.values), name="tenant_source_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def is_syncable(self) -> bool:
        return (
            self.is_active
            and self.sync_enabled
            and self.entra_tenant_id is not None
            and self.consent_state == self.ConsentState.CONSENTED
        )

    @property
    def lease_held(self) -> bool:
        return self.sync_lease_until is not None and self.sync_lease_until > timezone.now()

    @property
    def health(self) -> str:
        if not self.is_active:
            return Health.DISABLED
        if self.consent_state in ATTENTION_STATES or self.last_sync_outcome == "failed":
            return Health.ATTENTION
        if self.consent_state in WAITING_STATES:
            return Health.WAITING
        return Health.OK

    def get_health_display(self) -> str:
        return Health(self.health).label

    def record_access_check(
        self,
        *,
        state: str,
        roles: list[str] | None = None,
        error_class: str = "",
        error_message: str = "",
    ) -> None:
        """Store the outcome of an access check (token + claims) on this tenant."""
        self.consent_state = state
        if roles is not None:
            self.granted_roles = roles
        self.consent_error_class = error_class
        self.consent_error_message = error_message
        self.consent_checked_at = timezone.now()
        self.save(
            update_fields=[
                "consent_state",
                "granted_roles",
                "consent_error_class",
                "consent_error_message",
                "consent_checked_at",
                "updated_at",
            ]
        )

    @property
    def has_credentials(self) -> bool:
        """An app registration is configured for this tenant's cloud (settings)."""
        return tokens.has_credentials(self.cloud)

    @property
    def portal_base_url(self) -> str:
        """The Microsoft Defender portal of this tenant's cloud (for links)."""
        return get_cloud(self.cloud).portal_base_url

    def incident_client(self, *, budget_reserve: int = 0) -> IncidentClient:
        """The client of this tenant's incident API (its source, in its cloud): the apps'
        one way to Microsoft. `budget_reserve`: calls per budget period left to the sync
        (incident actions pass it)."""
        if self.entra_tenant_id is None:
            raise errors.TenantNotFound("The tenant ID is not known yet: send a consent link.")
        if not self.has_credentials:
            raise errors.CredentialInvalid(
                f"No app registration is configured for the {self.get_cloud_display()} cloud: "
                "set its client ID and secret or certificate (README, National clouds)."
            )
        return client_class(self.source)(
            str(self.entra_tenant_id), self.cloud, budget_reserve=budget_reserve
        )

    @property
    def write_access_missing(self) -> str:
        """Why the portal may not update this tenant's incidents although updates are on
        (its token lacks its source's ReadWrite permission), "" when it may or updates are
        off."""
        if not settings.MICROSOFT_INCIDENT_UPDATES:
            return ""
        required = required_roles(self.source, updates=True)
        missing = missing_roles(self.granted_roles or [], required)
        if not missing:
            return ""
        return (
            f"This tenant's token lacks {', '.join(missing)}: the customer granted read access "
            "only, so incidents cannot be updated from the portal. Send them a new consent "
            "link to grant the wider permission, then run 'Check access'."
        )

    # --- State changes ----------------------------------------------------------------------

    def _update(self, condition: Q | None = None, **fields: Any) -> bool:
        rows = Tenant.objects.filter(pk=self.pk)
        if condition is not None:
            rows = rows.filter(condition)
        if rows.update(**fields) != 1:
            return False
        for name, value in fields.items():
            setattr(self, name, value)
        return True

    def _set(
        self, where: dict[str, Any], lapsed: dict[str, Any] | None = None, **fields: Any
    ) -> bool:
        """`_update` for what every sync run does (take, renew and release its lease), in raw
        SQL built once: `where` equalities, `lapsed` columns NULL or before the values."""
        if raw_sql.update(Tenant, {"id": self.pk, **where}, fields, lapsed=lapsed) != 1:
            return False
        for name, value in fields.items():
            setattr(self, name, value)
        return True

    def take_sync_lease(
        self,
        *,
        now: datetime,
        held: str = "",
        read: tuple[str, Sequence[Any]] = ("", ()),
        free_tried: bool = False,
    ) -> str | None:
        """A new lease token when this run got the tenant, None when another run holds it.

        The token is the run's fencing value: every renewal and every page's write is
        conditional on it, so a run that lost the tenant (its lease expired and another run
        took it) can write nothing more. `held` is the token of a lease this run already
        holds (kept over a retry's countdown, see `hold_lease_for_retry`): taking it again
        is allowed, to nobody else until it expires. The token changes on every take, so
        that of two copies of one retry message only the first gets the tenant.

        Afterwards `took_over_lease` says whether the lease was left by a run that never
        released it (its worker died, or its retry never came): its runs may need closing.
        Nearly always the last run released it, and one UPDATE takes it and reads the row
        back: this object's fields are then the row's as the lease was taken (a run needs
        the watermark its predecessor left), and `lease_read` the values of `read` (SQL
        expressions and their parameters, the row's table by its name in subqueries: what
        the run would otherwise read right after). Otherwise `lease_read` is empty.
        `free_tried`: the caller has just made that first try (`free_lease_statement`), in
        vain: go straight to the takeover's.
        """
        self.took_over_lease = False
        self.lease_read = ()
        token, take = self.free_lease_statement(now)
        if not free_tried:
            expressions, params = read
            returning = ", ".join(filter(None, [row_columns(), expressions]))
            row = raw_sql.execute_returning(take, (returning, params))
            if row is not None:
                self.lease_read = self.load_row(row)
                return token
        until = now + timedelta(seconds=lease_seconds())
        free = _lease_free(now)
        if held:
            free |= Q(sync_lease_token=held)
        taken = self._update(free, sync_lease_until=until, sync_lease_token=token)
        self.took_over_lease = taken
        return token if taken else None

    def free_lease_statement(self, now: datetime) -> tuple[str, raw_sql.Statement]:
        """A new lease token, and the UPDATE that takes the lease with it if it is free as a
        released lease leaves it (no token, no time in the future): `take_sync_lease`'s
        first try, for a caller that makes it with more in one statement and reads the row
        back (`load_row`)."""
        token = uuid.uuid4().hex
        until = now + timedelta(seconds=lease_seconds())
        # A release clears the token with the time.
        statement = raw_sql.update_statement(
            Tenant,
            {"id": self.pk, "sync_lease_token": ""},
            {"sync_lease_until": until, "sync_lease_token": token},
            lapsed={"sync_lease_until": now},
        )
        return token, statement

    def load_row(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """This object's fields from a row read in raw SQL that starts with `row_columns()`;
        returns the row's other values."""
        fields = self._meta.concrete_fields
        values = raw_sql.from_db(fields, row[: len(fields)])
        for field, value in zip(fields, values, strict=True):
            setattr(self, field.attname, value)
        return tuple(row[len(fields) :])

    def renew_sync_lease(self, *, token: str) -> bool:
        """Extend our lease by one lease from now; False when it is no longer ours. In a
        page's transaction this is the fence: it locks the tenant's row until the page
        commits, so a takeover waits for it, and a run that lost the lease writes nothing."""
        if not token:
            return False
        until = timezone.now() + timedelta(seconds=lease_seconds())
        return self._set({"sync_lease_token": token}, sync_lease_until=until)

    def hold_lease_for_retry(self, *, token: str, seconds: float) -> bool:
        """Keep an interrupted run's lease over its retry countdown plus one lease (so that
        no scheduled run starts over from the watermark meanwhile, and that the scheduler
        takes the tenant over if the retry never comes). False when it was lost meanwhile."""
        if not token:
            return False
        until = timezone.now() + timedelta(seconds=seconds + lease_seconds())
        return self._update(Q(sync_lease_token=token), sync_lease_until=until)

    def release_sync_lease(self, *, token: str) -> None:
        # Only our own lease: if ours expired and another run took the tenant, leave theirs.
        if token:
            self._set({"sync_lease_token": token}, sync_lease_until=None, sync_lease_token="")

    def request_follow_up_sync(self, *, full: bool, now: datetime) -> bool:
        """ "Sync now" while a sync holds the tenant: one more run after it (a full one wins).
        False when no run holds it any more (its end is past: the caller runs now instead),
        so that a request is never left for a run that has already ended."""
        held = ~Q(sync_lease_token="") & Q(sync_lease_until__gte=now)
        if full:
            return self._update(held, sync_follow_up="full")
        # One already requested (either kind) is the same request.
        return self._update(held & Q(sync_follow_up=""), sync_follow_up="sync") or (
            Tenant.objects.filter(held, pk=self.pk).exclude(sync_follow_up="").exists()
        )

    def take_follow_up_sync(self) -> str:
        """The follow-up requested meanwhile ("sync", "full"), once; "" when none."""
        # Nearly always none, and the run's end read it: nothing to ask then.
        at_end, self._follow_up_at_end = self._follow_up_at_end, None
        if at_end == "" or not (
            Tenant.objects.filter(pk=self.pk).exclude(sync_follow_up="").exists()
        ):
            return ""
        for kind in ("full", "sync"):
            if self._update(Q(sync_follow_up=kind), sync_follow_up=""):
                return kind
        return ""

    def end_sync_run(
        self,
        *,
        token: str = "",
        newest: datetime | None = None,
        outcome: str = "",
        at: datetime | None = None,
        error_class: str = "",
        error_message: str = "",
        after: raw_sql.Statement | None = None,
    ) -> bool:
        """What a sync run leaves on its tenant, in one UPDATE (a schedule cycle does this
        for every tenant; a second one when a success clears a consent error):

        - the watermark moved to `newest`, never backwards (a slower run finishing late);
        - the run's `outcome` at `at` with its error, when given;
        - after a success, an error about consent or our credentials recorded before the run
          (a rejected secret since replaced, a revocation since undone) cleared: not true now;
        - the lease released, if it is still ours (`token`): if ours expired and another run
          took the tenant, theirs stays — then a second UPDATE records the rest.

        `after`: a conditional UPDATE to make first (the run's own row), in the same
        statement where the database allows; nothing is recorded here unless it changed a
        row. Returns whether it did (True without one).
        """
        fields: dict[str, Any] = {}  # what the row gets
        raised: dict[str, Any] = {}  # what the row gets if that is later than what it has
        local: dict[str, Any] = {}  # what this object gets, without reading the row back
        if newest is not None:
            raised["incidents_watermark"] = newest
            if self.incidents_watermark is None or self.incidents_watermark < newest:
                local["incidents_watermark"] = newest
        if outcome:
            recorded = {
                "last_sync_at": at or timezone.now(),
                "last_sync_outcome": outcome,
                "last_sync_error_class": error_class,
                "last_sync_error_message": error_message,
            }
            fields.update(recorded)
            local.update(recorded)
        # Raw SQL with its text built once: through the ORM, this statement (every run makes
        # it) cost 3% of a one-page run's CPU.
        release = {"sync_lease_until": None, "sync_lease_token": ""}
        mine = {"id": self.pk, "sync_lease_token": token}
        # Read back: the follow-up requested while the run held the tenant (a request after
        # the release finds no run to follow: `request_follow_up_sync`).
        follow_up = (raw_sql.column(Tenant, "sync_follow_up"), ())
        ended = None
        if token:
            done, ended = raw_sql.update_after(
                after, Tenant, mine, {**fields, **release}, follow_up, at_least=raised
            )
            if not done:
                return False
        elif after is not None and not raw_sql.execute(after):
            return False
        if ended:
            local.update(release)
            (self._follow_up_at_end,) = ended
        elif fields or raised:
            raw_sql.update(Tenant, {"id": self.pk}, fields, at_least=raised)
        if outcome == "success" and self.consent_error_class:
            # As read when the run began: an error recorded since is newer than this success
            # (a second UPDATE, rarely: only while the consent state is what allows it).
            cleared = {"consent_error_class": "", "consent_error_message": ""}
            consented = {"id": self.pk, "consent_state": ConsentState.CONSENTED}
            if raw_sql.update(Tenant, consented, cleared) and (
                self.consent_state == ConsentState.CONSENTED
            ):
                local.update(cleared)
        for name, value in local.items():
            setattr(self, name, value)
        return True

    def record_consent_error(
        self, *, error_class: str, error_message: str, state: str | None = None
    ) -> None:
        """What an error says about consent or our credentials (a token refused, an API
        answer), with the consent state it implies when it implies one."""
        fields: dict[str, Any] = {
            "consent_error_class": error_class,
            "consent_error_message": error_message,
            "consent_checked_at": timezone.now(),
        }
        if state is not None:
            fields["consent_state"] = state
        self._update(**fields)

    def attach_entra_tenant(self, entra_tenant_id: str) -> None:
        """After a consent callback: the tenant Microsoft returned, pending verification by a
        real token. Raises IntegrityError when another tenant holds that ID."""
        self._update(
            entra_tenant_id=uuid.UUID(entra_tenant_id),
            consent_state=ConsentState.PENDING,
            consent_error_class="",
            consent_error_message="",
            updated_at=timezone.now(),
        )

    def switch_source(self, source: str) -> bool:
        """Read incidents from `source` from now on; False when it already did.

        The watermark is cleared so that the next sync reads everything again from the new
        source, onto the same rows (same incident and alert IDs). A consented tenant goes
        back to pending: the new API's permission is checked before it syncs again.
        """
        fields: dict[str, Any] = {
            "source": source,
            "incidents_watermark": None,
            "updated_at": timezone.now(),
        }
        if self.consent_state == ConsentState.CONSENTED:
            fields["consent_state"] = ConsentState.PENDING
        return self._update(~Q(source=source), **fields)

    def forget_consent(self) -> None:
        """A superuser changed the Entra tenant ID: nothing learnt about the old tenant
        stays (consent state, granted roles, watermark, last sync); the new one starts
        not consented."""
        self._update(
            consent_state=ConsentState.NOT_CONSENTED,
            granted_roles=[],
            consent_error_class="",
            consent_error_message="",
            consent_checked_at=None,
            incidents_watermark=None,
            last_sync_at=None,
            last_sync_outcome="",
            last_sync_error_class="",
            last_sync_error_message="",
            updated_at=timezone.now(),
        )

    def set_active(self, enabled: bool) -> bool:
        """Enable or disable the tenant; False when it already was."""
        return self._update(Q(is_active=not enabled), is_active=enabled, updated_at=timezone.now())


def tenant_choices(tenants: QuerySet[Tenant]) -> list[tuple[int, str]]:
    """(pk, label) in name order; tenants that share a name (in any case) are told apart by
    their domain, or their number when they have none."""
    rows = list(
        tenants.order_by("display_name", "pk").values_list("pk", "display_name", "primary_domain")
    )
    # Each name folded once: a superuser's list page asks for a thousand tenants.
    folded = [name.casefold() for _, name, _ in rows]
    seen = Counter(folded)
    return [
        (pk, f"{name} ({domain or f'#{pk}'})" if seen[key] > 1 else name)
        for (pk, name, domain), key in zip(rows, folded, strict=True)
    ]


@functools.cache
def row_columns() -> str:
    """A tenant's columns in raw SQL, named with their table (`Tenant.load_row`)."""
    table = raw_sql.table(Tenant)
    fields = Tenant._meta.concrete_fields
    return ", ".join(f"{table}.{raw_sql.column(Tenant, f.name)}" for f in fields)
