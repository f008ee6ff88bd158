from django.urls import path

from partner_portal.alerts import views

app_name = "alerts"
urlpatterns = [
    path("", views.rule_list, name="list"),
    path("rules/new/", views.rule_create, name="rule_create"),
    path("rules/<int:rule_id>/", views.rule_detail, name="rule"),
    path("rules/<int:rule_id>/edit/", views.rule_edit, name="rule_edit"),
    path("rules/<int:rule_id>/delete/", views.rule_delete, name="rule_delete"),
    path("channels/new/", views.channel_create, name="channel_create"),
    path("channels/<int:channel_id>/edit/", views.channel_edit, name="channel_edit"),
    path("channels/<int:channel_id>/delete/", views.channel_delete, name="channel_delete"),
]
