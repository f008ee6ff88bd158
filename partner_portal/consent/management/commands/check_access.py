"""`manage.py check_access <tenant pk>`: the verification task's twin, run synchronously."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from partner_portal.consent import flow
from partner_portal.tenants.models import Tenant


class Command(BaseCommand):
    help = "Get a token for a tenant, check its claims and store the consent state."

    def add_arguments(self, parser):
        parser.add_argument("tenant_pk", type=int, help="The tenant's primary key in the portal.")

    def handle(self, *args, tenant_pk: int, **options) -> None:
        tenant = Tenant.objects.filter(pk=tenant_pk).first()
        if tenant is None:
            raise CommandError(f"No tenant with id {tenant_pk}.")
        tenant = flow.verify_access(tenant=tenant)
        self.stdout.write(f"{tenant}: {tenant.get_consent_state_display()}")
        if tenant.granted_roles:
            self.stdout.write(f"Granted: {', '.join(tenant.granted_roles)}")
        if tenant.consent_error_class:
            self.stdout.write(f"{tenant.consent_error_class}: {tenant.consent_error_message}")
