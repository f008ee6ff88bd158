from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "partner_portal.accounts"
