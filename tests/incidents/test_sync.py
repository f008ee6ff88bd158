"""The sync as plain functions, against devcloud over TLS with real MSAL tokens."""

from __future__ import annotations

import pytest

from partner_portal.incidents import sync
from partner_portal.incidents.models import Incident, SyncOutcome
from partner_portal.microsoft.defender import parse_time
from tests.incidents.helpers import assert_db_matches, make_tenant, tid

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _local_cache(settings):
    # The call budget lives in the cache: a fresh local one per test.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    }


def test_sync_then_evolve_then_sync_equals_ground_truth(db, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings, count=250)
    run = sync.sync_tenant(tenant=tenant)
    assert run.outcome == SyncOutcome.SUCCESS
    assert (run.pages, run.created_count, run.updated_count) == (3, 250, 0)
    assert_db_matches(devcloud, tenant)
    tenant.refresh_from_db()
    newest = max(parse_time(i["lastUpdateTime"]) for i in devcloud.incidents(tid(tenant)))
    assert tenant.incidents_watermark == newest
    assert tenant.last_sync_outcome == SyncOutcome.SUCCESS
    assert tenant.sync_lease_until is None

    changed = devcloud.evolve(tid(tenant), changed=20, new=5)
    run = sync.sync_tenant(tenant=tenant)
    assert run.outcome == SyncOutcome.SUCCESS
    assert run.created_count == 5
    assert run.updated_count >= len(changed["changed"])
    assert run.pages == 1  # only the window since the watermark (minus the overlap)
    assert_db_matches(devcloud, tenant)


def test_a_tenant_without_incidents_syncs_to_nothing(db, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings)
    run = sync.sync_tenant(tenant=tenant)
    assert run.outcome == SyncOutcome.SUCCESS
    assert (run.pages, run.api_calls, run.created_count) == (1, 1, 0)
    tenant.refresh_from_db()
    assert tenant.incidents_watermark is None
    assert not Incident.objects.filter(tenant=tenant).exists()


def test_search_text_and_severity_rank_are_derived_at_upsert(db, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings, count=30)
    sync.sync_tenant(tenant=tenant)
    for incident in Incident.objects.filter(tenant=tenant).prefetch_related("alerts"):
        assert incident.search_text == incident.search_text.lower()
        assert incident.name.lower() in incident.search_text
        for alert in incident.alerts.all():
            assert alert.title.lower() in incident.search_text
            for device in alert.devices:
                if device.get("deviceDnsName"):
                    assert device["deviceDnsName"].lower() in incident.search_text
        rank = {"informational": 1, "low": 2, "medium": 3, "high": 4}.get(
            incident.severity.lower(), 0
        )
        assert incident.severity_rank == rank
