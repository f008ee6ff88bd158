from django.urls import path

from partner_portal.consent import views

app_name = "consent"
urlpatterns = [
    path("links/", views.link_list, name="links"),
    path("links/new/<int:tenant_pk>/", views.link_create, name="create"),
    path("links/<int:link_id>/", views.link_detail, name="detail"),
    path("links/<int:link_id>/revoke/", views.link_revoke, name="revoke"),
    path("tenants/<int:tenant_pk>/check-access/", views.check_access, name="check_access"),
    path("callback/", views.callback, name="callback"),
    path("<slug:token>/", views.landing, name="landing"),
    path("<slug:token>/start/", views.start, name="start"),
]
