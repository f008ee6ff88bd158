from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from partner_portal.incidents.models import Incident
from partner_portal.tenants.access import visible_tenant_ids


def incident_list(request: HttpRequest) -> HttpResponse:
    incidents = Incident.objects.filter(tenant__in=visible_tenant_ids(request.user))
    return render(
        request,
        "incidents/list.html",
        {"incidents": incidents.select_related("tenant")[:50]},
    )
