from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "partner_portal.consent"
