from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from monitoring.selectors import hub_overview_get


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "monitoring/home.html", {"overview": hub_overview_get()})
