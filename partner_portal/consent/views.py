from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from partner_portal.consent.models import ConsentLink
from partner_portal.tenants.access import visible_tenant_ids


def link_list(request: HttpRequest) -> HttpResponse:
    links = ConsentLink.objects.filter(tenant__in=visible_tenant_ids(request.user))
    return render(request, "consent/links.html", {"links": links.select_related("tenant")})
