from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Market-data hub"
admin.site.site_title = "Market-data hub admin"
admin.site.index_title = "Instruments, providers and health"

urlpatterns = [
    path("admin/", admin.site.urls),
    # Login for everyone (the admin's own login admits staff only).
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("monitoring.urls")),
    path("", include("feeds.urls")),
]
