"""Dashboard test data: incidents as the sync writes them, and a small known set.

A module rather than conftest.py, so that other parts of tests/incidents/ keep their own
conftest; test modules import the fixture they use.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import AlertFactory, IncidentFactory

RANKS = {"High": 4, "Medium": 3, "Low": 2, "Informational": 1, "UnSpecified": 0}


def make_incident(tenant, *, hours_ago: float = 1, created_hours_ago: float | None = None, **kw):
    """An incident as the sync writes it (severity_rank and search words derived)."""
    now = timezone.now()
    severity = kw.pop("severity", "Medium")
    name = kw.pop("name", None)
    extra = {"name": name} if name else {}
    incident = IncidentFactory(
        tenant=tenant,
        severity=severity,
        severity_rank=RANKS.get(severity, 0),
        last_update_time=now - timedelta(hours=hours_ago),
        created_time=now
        - timedelta(hours=created_hours_ago if created_hours_ago is not None else hours_ago + 1),
        **extra,
        **kw,
    )
    if not kw.get("search_text"):
        incident.search.text = incident.name.lower()
        incident.search.save(update_fields=["text"])
    return incident


@pytest.fixture
def contoso_and_fabrikam(tenant_a, tenant_b):
    """A small, known set: four Contoso incidents, two Fabrikam ones."""
    a1 = make_incident(
        tenant_a, name="Ransomware on FIN-01", severity="High", status="Active", hours_ago=1
    )
    a2 = make_incident(
        tenant_a,
        name="Phishing mail reported",
        severity="Medium",
        status="InProgress",
        assigned_to="secop@contoso.com",
        hours_ago=30,
    )
    a3 = make_incident(
        tenant_a,
        name="Unfamiliar sign-in",
        severity="Low",
        status="Resolved",
        classification="FalsePositive",
        determination="Other",
        hours_ago=24 * 10,
    )
    a4 = make_incident(
        tenant_a, name="Suspicious PowerShell", severity="Informational", hours_ago=24 * 40
    )
    b1 = make_incident(tenant_b, name="Fabrikam ransomware", severity="High", hours_ago=2)
    b2 = make_incident(tenant_b, name="Fabrikam phishing", severity="Low", hours_ago=3)
    AlertFactory(incident=a1, title="Ransomware behavior detected")
    return {"a1": a1, "a2": a2, "a3": a3, "a4": a4, "b1": b1, "b2": b2}
