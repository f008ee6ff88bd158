import os

from django.core.wsgi import get_wsgi_application

from partner_portal.gc_freeze import freeze_startup_objects

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "partner_portal.settings")
application = get_wsgi_application()
freeze_startup_objects()
