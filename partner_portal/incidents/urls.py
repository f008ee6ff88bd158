from django.urls import path

from partner_portal.incidents import action_views, sync_views, views

app_name = "incidents"
urlpatterns = [
    path("", views.incident_list, name="list"),
    path("incidents/summary/", views.incident_summary, name="summary"),
    path("incidents/new-count/", views.incident_new_count, name="new_count"),
    path("incidents/export.csv", views.incident_export, name="export"),
    path("incidents/<int:incident_id>/", views.incident_detail, name="detail"),
    path("incidents/views/", views.view_save, name="view_save"),
    path("incidents/views/<int:view_id>/delete/", views.view_delete, name="view_delete"),
    path("incidents/views/<int:view_id>/default/", views.view_default, name="view_default"),
    path("preferences/", views.preferences, name="preferences"),
    # Working incidents (incidents/actions.py).
    path("incidents/<int:incident_id>/act/", action_views.incident_act, name="act"),
    path("incidents/bulk/", action_views.bulk_act, name="bulk_act"),
    path("incidents/jobs/<int:job_id>/", action_views.action_job, name="action_job"),
    path("incidents/jobs/<int:job_id>/confirm/", action_views.confirm_job, name="confirm_job"),
    # The tenant page's "Sync now" and its live status.
    path("sync/tenants/<int:tenant_pk>/", sync_views.sync_now, name="sync_now"),
    path("sync/tenants/<int:tenant_pk>/status/", sync_views.sync_status, name="sync_status"),
]
