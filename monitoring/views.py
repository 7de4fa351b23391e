from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from monitoring.selectors import hub_overview_get, placement_overview_get


def home(request: HttpRequest) -> HttpResponse:
    context = {"overview": hub_overview_get(), "placement": placement_overview_get()}
    return render(request, "monitoring/home.html", context)
