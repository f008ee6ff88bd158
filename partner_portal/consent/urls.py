from django.urls import path

from partner_portal.consent import views

app_name = "consent"
urlpatterns = [
    path("links/", views.link_list, name="links"),
    path("links/new/<int:tenant_id>/", views.link_create, name="create"),
    path("links/<int:link_id>/", views.link_detail, name="detail"),
    path("links/<int:link_id>/revoke/", views.link_revoke, name="revoke"),
    path("callback/", views.callback, name="callback"),
    path("<slug:token>/", views.landing, name="landing"),
    path("<slug:token>/start/", views.start, name="start"),
    # Anything else under /consent/ (a link cut short or mangled by an e-mail program).
    path("<path:rest>", views.not_found),
]
