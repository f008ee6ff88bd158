from __future__ import annotations

import uuid
from datetime import timedelta

import factory
from django.contrib.auth.models import Group, User
from django.utils import timezone

from partner_portal.consent.models import ConsentLink, new_link_token
from partner_portal.incidents import counters
from partner_portal.incidents.models import Alert, Incident, IncidentSearch
from partner_portal.tenants.models import Tenant


class GroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Group
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"team-{n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@msp.example")
    is_staff = True
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery")

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.add(*extracted)
        if create:
            self.save()


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant
        skip_postgeneration_save = True

    display_name = factory.Sequence(lambda n: f"Customer {n}")
    primary_domain = factory.Sequence(lambda n: f"customer{n}.onmicrosoft.com")

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.add(*extracted)


class ConsentedTenantFactory(TenantFactory):
    entra_tenant_id = factory.LazyFunction(uuid.uuid4)
    consent_state = Tenant.ConsentState.CONSENTED
    granted_roles = factory.LazyFunction(lambda: ["Incident.Read.All"])


class ConsentLinkFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ConsentLink

    tenant = factory.SubFactory(TenantFactory)
    # The raw token stays on the instance (the row has its hash), as with flow.create_link.
    token = factory.LazyFunction(new_link_token)


class IncidentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Incident

    tenant = factory.SubFactory(ConsentedTenantFactory)
    microsoft_id = factory.Sequence(lambda n: 1000 + n)
    name = factory.Sequence(lambda n: f"Multi-stage incident {n}")
    severity = "Medium"
    severity_rank = 3
    status = "Active"
    created_time = factory.LazyFunction(lambda: timezone.now() - timedelta(hours=2))
    last_update_time = factory.LazyFunction(timezone.now)
    synced_at = factory.LazyFunction(timezone.now)

    @classmethod
    def _create(cls, model_class, *args, search_text: str = "", **kwargs):
        # Counted as the sync counts what it stores, so the summary sees factory incidents;
        # its search words (`search_text`) stored as the sync stores them.
        incident = super()._create(model_class, *args, **kwargs)
        counters.record(tenant=incident.tenant, before={}, incidents=[incident])
        IncidentSearch.objects.create(
            incident=incident, tenant_id=incident.tenant_id, text=search_text
        )
        return incident


class AlertFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Alert

    incident = factory.SubFactory(IncidentFactory)
    microsoft_id = factory.Sequence(lambda n: f"da{n:016d}")
    title = factory.Sequence(lambda n: f"Suspicious activity {n}")
    severity = "Medium"
