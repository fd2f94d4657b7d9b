"""The site's own error pages, as a production server (DEBUG off) serves them: a page of
the site (its header, its links, its Content-Security-Policy) saying what went wrong and
where to go, not Django's bare "Not Found" or "Server Error (500)"."""

from __future__ import annotations

import pytest
from django.db import OperationalError
from django.test import Client
from django.urls import path

from config.urls import handler500 as site_handler500
from config.urls import urlpatterns as site_urlpatterns

pytestmark = pytest.mark.django_db


def broken(request):
    raise RuntimeError("a bug")


def database_gone(request):
    # What psycopg raises through Django when the server restarts mid-request (the real
    # outage is tests/playground/test_database_away_pg.py's).
    raise OperationalError("server closed the connection unexpectedly")


urlpatterns = [path("broken", broken), path("database-gone", database_gone), *site_urlpatterns]
handler500 = site_handler500  # Django looks it up in the root URLconf


@pytest.fixture(autouse=True)
def production(settings):
    settings.DEBUG = False


def assert_site_page(response, status: int, heading: str) -> str:
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert f"<h1>{heading}</h1>" in page
    assert 'class="site-header"' in page and 'href="/models"' in page
    assert 'href="/docs/api"' in page  # where to go from here
    assert "Content-Security-Policy" in response
    return page


def test_an_unknown_address_gets_the_sites_404_with_a_search(client):
    page = assert_site_page(client.get("/no-such-page"), 404, "Page not found")
    assert "<code>/no-such-page</code>" in page
    assert (
        '<form class="search-bar error-search" role="search" method="get" action="/models">' in page
    )


def test_an_error_gets_the_sites_500_without_internals(settings):
    settings.ROOT_URLCONF = __name__
    client = Client(raise_request_exception=False)
    page = assert_site_page(client.get("/broken"), 500, "Something went wrong on our side")
    assert "a bug" not in page and "RuntimeError" not in page


def test_a_database_outage_gets_the_sites_503_not_its_500(settings):
    from django.core.signals import got_request_exception

    settings.ROOT_URLCONF = __name__
    client = Client(raise_request_exception=False)
    unhandled = []
    receiver = lambda sender, **kwargs: unhandled.append(kwargs)  # noqa: E731
    got_request_exception.connect(receiver)
    try:
        response = client.get("/database-gone")
    finally:
        got_request_exception.disconnect(receiver)
    # Answered by the middleware, not left to handler500: the request's log line (which
    # django-structlog writes as request_failed, 500, on this signal) says 503.
    assert unhandled == []
    page = assert_site_page(response, 503, "Vitrine is briefly unavailable")
    assert response["Retry-After"] == "2" and response["Cache-Control"] == "no-store"
    assert "server closed" not in page and "OperationalError" not in page


def test_a_disallowed_host_gets_the_sites_400(client, settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    assert_site_page(client.get("/models", HTTP_HOST="evil.example"), 400, "Bad request")


def test_an_expired_form_says_to_reload_and_send_it_again():
    from tests import factories

    factories.user(username="ada")
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/login/", {"username": "ada", "password": "pw-ada-1"})
    page = assert_site_page(response, 403, "This form has expired")
    assert "reload the page and send the form again" in page
    assert "allow cookies" in page  # no CSRF cookie was sent


def test_a_script_asking_for_json_still_gets_the_api_shape(client):
    response = client.get("/no-such-page", HTTP_ACCEPT="application/json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
