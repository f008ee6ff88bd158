from django.urls import path

from partner_portal.tenants import views

app_name = "tenants"
urlpatterns = [
    path("", views.tenant_list, name="list"),
]
