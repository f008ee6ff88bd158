"""Thin Celery tasks: look up arguments, call the plain functions in incidents.sync."""

from celery import shared_task


@shared_task
def sync_all_tenants() -> None:
    """Placeholder until the sync lands: fans out one sync_tenant per tenant."""
