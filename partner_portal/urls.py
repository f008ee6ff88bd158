from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("tenants/", include("partner_portal.tenants.urls")),
    path("consent/", include("partner_portal.consent.urls")),
    path("alerts/", include("partner_portal.alerts.urls")),
    path("", include("partner_portal.incidents.urls")),
]
