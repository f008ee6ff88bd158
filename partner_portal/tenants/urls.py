from django.urls import path

from partner_portal.tenants import views

app_name = "tenants"
urlpatterns = [
    path("", views.tenant_list, name="list"),
    path("new/", views.tenant_create, name="create"),
    path("<int:tenant_pk>/", views.tenant_detail, name="detail"),
    path("<int:tenant_pk>/edit/", views.tenant_edit, name="edit"),
    path("<int:tenant_pk>/toggle/", views.tenant_toggle, name="toggle"),
    path("<int:tenant_pk>/source/", views.tenant_source, name="source"),
]
