from django.urls import path

from partner_portal.incidents import views

app_name = "incidents"
urlpatterns = [
    path("", views.incident_list, name="list"),
]

# --- Incident sync (the tenant page's "Sync now" and its live status) -------------------
from partner_portal.incidents import sync_views  # noqa: E402

urlpatterns += [
    path("sync/tenants/<int:tenant_id>/", sync_views.sync_now, name="sync_now"),
    path("sync/tenants/<int:tenant_id>/status/", sync_views.sync_status, name="sync_status"),
]
