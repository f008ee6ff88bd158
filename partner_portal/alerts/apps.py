from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "partner_portal.alerts"
    label = "alerts"
    verbose_name = "Alerting"
