import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_home_page_shows_counts(client, sample_import):
    from feeds.models import Instrument

    page = client.get(reverse("monitoring:home"))
    assert page.status_code == 200
    assert page.context["overview"].instruments == Instrument.objects.count()
    assert f'data-testid="instrument-count">{Instrument.objects.count()}<' in page.text
    assert "Log in" in page.text
