from django.urls import path

from partner_portal.consent import views

app_name = "consent"
urlpatterns = [
    path("links/", views.link_list, name="links"),
]
