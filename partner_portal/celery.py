"""The Celery application: the stock Django recipe, configured from settings (CELERY_*)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "partner_portal.settings")

app = Celery("partner_portal")
# The default in every thread, not only the one that imported this module: shared tasks
# sent from other threads (runserver, gunicorn threads, live_server) must find this app.
app.set_default()
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
