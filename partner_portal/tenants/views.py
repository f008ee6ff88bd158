from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from partner_portal.tenants.access import visible_tenants


def tenant_list(request: HttpRequest) -> HttpResponse:
    tenants = visible_tenants(request.user)
    return render(request, "tenants/list.html", {"tenants": tenants})
