from django.urls import path

from monitoring import metrics_views, views

app_name = "monitoring"

urlpatterns = [
    path("", views.home, name="home"),
    path("monitor/", views.monitor_page, name="monitor"),
    path("metrics", metrics_views.metrics, name="metrics"),
]
