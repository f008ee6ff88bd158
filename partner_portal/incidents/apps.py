from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    name = "partner_portal.incidents"
