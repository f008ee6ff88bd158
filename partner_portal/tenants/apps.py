from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "partner_portal.tenants"
