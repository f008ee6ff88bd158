"""The Django admin, for superusers only (L1).

Staff work through the portal's own pages, where every query goes through
`tenants.access`; the admin would show every group's tenants, incidents, links and audit
rows to anyone with view permissions. So the site admits superusers only, whatever
`is_staff` and model permissions say.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig


class SuperuserAdminSite(admin.AdminSite):
    site_header = "Partner Portal administration (superusers)"

    def has_permission(self, request) -> bool:
        user = request.user
        return bool(user.is_active and user.is_superuser)


class PortalAdminConfig(AdminConfig):
    default_site = "partner_portal.admin.SuperuserAdminSite"
