from django.urls import path, register_converter

from feeds import views
from feeds.converters import InstrumentKeyConverter

app_name = "feeds"

register_converter(InstrumentKeyConverter, "instrument_key")

urlpatterns = [
    path("watchlist/", views.watchlist_page, name="watchlist"),
    path("instruments/<instrument_key:key>/", views.instrument_page, name="instrument"),
    path("api/instruments/search/", views.instruments_search_api, name="api-instruments-search"),
    path("api/watchlist/add/", views.watchlist_item_add_api, name="api-watchlist-add"),
    path("api/watchlist/remove/", views.watchlist_item_remove_api, name="api-watchlist-remove"),
]
