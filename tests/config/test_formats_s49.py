"""The admin writes dates as the site does ("7 Dec 2026 01:57"), not as Django's English
default ("Dec. 7, 2026, 1:57 a.m."): config/formats/en/formats.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.utils import formats

from billing.models import ApiKey
from billing.services.keys import api_key_create
from tests import factories

AT = datetime(2026, 12, 7, 1, 57, tzinfo=UTC)


def test_the_english_formats_are_the_sites():
    assert formats.date_format(AT, "DATETIME_FORMAT") == "7 Dec 2026 01:57"
    assert formats.date_format(AT) == "7 Dec 2026"
    assert formats.date_format(AT, "SHORT_DATETIME_FORMAT") == "7 Dec 2026 01:57"
    # Numbers and what the admin's date inputs accept are Django's English ones still.
    assert formats.number_format(12345.5, 1, force_grouping=True) == "12,345.5"
    assert formats.get_format("DATE_INPUT_FORMATS")[0] == "%Y-%m-%d"


@pytest.mark.django_db
def test_an_admin_list_shows_the_sites_dates(staff_client):
    key, _ = api_key_create(user=factories.user(username="ada"), name="laptop")
    ApiKey.objects.filter(pk=key.pk).update(created_at=AT)
    html = staff_client.get("/admin/billing/apikey/").content.decode()
    assert "7 Dec 2026 01:57" in html
    assert "a.m." not in html and "Dec. 7" not in html
