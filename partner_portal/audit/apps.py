from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "partner_portal.audit"
