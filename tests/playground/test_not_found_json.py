"""A 404 to a client that asks for JSON only is the API's error shape (a run's and the try
page's scripts read errors as JSON); to a browser it is the site's page."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        f"/playground/jobs/{uuid.uuid4()}",  # someone else's private run, or none
        f"/playground/jobs/{uuid.uuid4()}/visibility",
        "/collections/nope",
    ],
)
def test_a_json_client_gets_the_error_shape_and_a_browser_the_page(client, path):
    method = client.post if path.endswith("visibility") else client.get
    as_json = method(path, headers={"Accept": "application/json"})
    assert as_json.status_code == 404
    assert as_json["Content-Type"] == "application/json"
    assert as_json.json() == {
        "error": {"message": "Not found.", "type": "not_found", "code": "not_found", "param": None}
    }
    page = method(path, headers={"Accept": "text/html,application/json;q=0.9"})
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
