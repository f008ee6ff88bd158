from django.urls import path

from partner_portal.incidents import views

app_name = "incidents"
urlpatterns = [
    path("", views.incident_list, name="list"),
    path("incidents/summary/", views.incident_summary, name="summary"),
    path("incidents/new-count/", views.incident_new_count, name="new_count"),
    path("incidents/export.csv", views.incident_export, name="export"),
    path("incidents/<int:incident_id>/", views.incident_detail, name="detail"),
]

# --- Sync (added by the sync helper) ------------------------------------------------------
