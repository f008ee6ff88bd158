"""`manage.py sync_incidents`: the task's synchronous twin."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from partner_portal.incidents.models import Incident, SyncRun
from tests.incidents.helpers import assert_db_matches, make_tenant, tid

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _local_cache(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def test_it_syncs_the_named_tenants_with_progress(db, devcloud, devcloud_settings):
    a = make_tenant(devcloud, devcloud_settings, count=1020, display_name="Contoso")
    b = make_tenant(devcloud, devcloud_settings, count=3, display_name="Fabrikam")
    out = StringIO()
    call_command("sync_incidents", "--tenant", "contoso", "--tenant", tid(b), stdout=out)
    text = out.getvalue()
    assert "Contoso: page 10, 1000 new, 0 updated" in text
    assert "Contoso: Success — 11 pages, 11 API calls, 1020 new, 0 updated" in text
    assert "Fabrikam: Success — 1 pages" in text
    assert_db_matches(devcloud, a)
    assert_db_matches(devcloud, b)


def test_without_tenants_it_syncs_every_due_one_and_full_ignores_the_watermark(
    db, devcloud, devcloud_settings
):
    a = make_tenant(devcloud, devcloud_settings, count=7)
    make_tenant(devcloud, devcloud_settings, count=4, sync_enabled=False)
    call_command("sync_incidents", stdout=StringIO())
    assert Incident.objects.count() == 7
    call_command("sync_incidents", "--tenant", str(a.pk), "--full", stdout=StringIO())
    # All 7 read again, none changed since: none counted as updated.
    assert SyncRun.objects.filter(tenant=a, full=True, pages=1, updated_count=0).exists()


def test_it_waits_out_throttling_and_resumes(db, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings, count=250)
    devcloud.add_fault(
        endpoint="list_incidents", kind="status", status=429, retry_after=1, count=1, after=1
    )
    out = StringIO()
    call_command("sync_incidents", "--tenant", str(tenant.pk), stdout=out)
    assert "again in 1s" in out.getvalue()
    assert_db_matches(devcloud, tenant)
    assert devcloud.requests_log(tid(tenant))["by_endpoint"]["list_incidents"] == 4


def test_a_permanent_error_is_explained_and_fails_the_command(db, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings, count=1, display_name="Gone")
    devcloud.revoke_consent(tid(tenant), devcloud_settings["client_id"])
    out = StringIO()
    with pytest.raises(CommandError, match="1 of 1"):
        call_command("sync_incidents", "--tenant", "Gone", stdout=out)
    assert "ConsentRequired" in out.getvalue()
    assert "Fix: " in out.getvalue()


def test_an_unknown_tenant_is_an_error(db):
    with pytest.raises(CommandError, match="No tenant matches"):
        call_command("sync_incidents", "--tenant", "nobody", stdout=StringIO())
