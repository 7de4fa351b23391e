from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Market-data hub"
admin.site.site_title = "Market-data hub admin"
admin.site.index_title = "Instruments, providers and health"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("monitoring.urls")),
]
