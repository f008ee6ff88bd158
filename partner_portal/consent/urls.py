from django.urls import path

from partner_portal.consent import views

app_name = "consent"
urlpatterns = [
    path("links/", views.link_list, name="links"),
    path("links/new/<int:tenant_pk>/", views.link_create, name="create"),
    path("links/<int:link_id>/", views.link_detail, name="detail"),
    path("links/<int:link_id>/revoke/", views.link_revoke, name="revoke"),
    path("links/<int:link_id>/confirm/", views.link_confirm, name="confirm"),
    path("links/<int:link_id>/replace/", views.link_replace, name="replace"),
    path("tenants/<int:tenant_pk>/check-access/", views.check_access, name="check_access"),
    path("callback/", views.callback, name="callback"),
    path("callback/retry/", views.retry, name="retry"),
    path("<slug:token>/", views.landing, name="landing"),
    path("<slug:token>/start/", views.start, name="start"),
    # Anything else under /consent/ (a link cut short or mangled by an e-mail program).
    path("<path:rest>", views.not_found, name="not_found"),
]
