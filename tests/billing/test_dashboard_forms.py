"""The dashboard's forms as a browser and a screen reader see them: one page, several forms.

The top-up form and the BYOK form both have a field named ``provider``; their controls must
still have distinct ids, and each <label for=...> must name a control of its own form.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from billing.models import ProviderKey, TopUp
from billing.payments import PROVIDERS
from tests import factories

pytestmark = pytest.mark.django_db

LABELABLE = {"input", "select", "textarea"}


class _Page(HTMLParser):
    """Every element with an id, every <label for>, and each form's controls, by form action."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.elements: dict[str, tuple[str, dict, str | None]] = {}  # id -> (tag, attrs, form)
        self.labels: list[tuple[str, str, str | None]] = []  # (for, text, form)
        self.controls: dict[str, list[tuple[str, dict]]] = {}  # form action -> [(tag, attrs)]
        self._form: str | None = None
        self._label: list | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "form":
            self._form = attrs.get("action")
            self.controls.setdefault(self._form, [])
        if "id" in attrs:
            self.ids.append(attrs["id"])
            self.elements.setdefault(attrs["id"], (tag, attrs, self._form))
        if tag == "label" and "for" in attrs:
            self._label = [attrs["for"], "", self._form]
        if tag in LABELABLE | {"option"} and self._form is not None:
            self.controls[self._form].append((tag, attrs))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        if tag == "label" and self._label is not None:
            self.labels.append((self._label[0], self._label[1].strip(), self._label[2]))
            self._label = None

    def handle_data(self, data: str) -> None:
        if self._label is not None:
            self._label[1] += data


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


@pytest.fixture(autouse=True)
def both_forms_shown(settings):
    """The dev payment provider (the top-up form) and a BYOK route (the provider-key form)."""
    settings.VITRINE_DEV_PAYMENTS = True
    settings.STRIPE_SECRET_KEY = ""
    settings.VITRINE_MIN_TOP_UP = Decimal("5")
    settings.VITRINE_MAX_TOP_UP = Decimal("10000")
    factories.byok_route()


def _assert_ids_unique_and_labels_own_their_controls(html: str) -> _Page:
    page = parse(html)
    assert [i for i, n in Counter(page.ids).items() if n > 1] == []
    assert page.labels
    for target, text, form in page.labels:
        assert target in page.elements, f"label {text!r} points at no element"
        tag, _, control_form = page.elements[target]
        assert tag in LABELABLE, f"label {text!r} points at a <{tag}>"
        assert control_form == form, f"label {text!r} names a control of another form"
    return page


def _label_target(page: _Page, text: str, form: str) -> tuple[str, dict]:
    [target] = [t for t, label, f in page.labels if label == text and f == form]
    tag, attrs, _ = page.elements[target]
    return tag, attrs


def test_every_id_is_unique_and_each_label_names_its_own_forms_control(owner_client):
    html = owner_client.get(reverse("billing:dashboard")).content.decode()
    page = _assert_ids_unique_and_labels_own_their_controls(html)

    byok = reverse("billing:provider_key_save")
    top_up = reverse("billing:top_up_start")
    # The BYOK "Provider" label names the provider <select>, not the top-up radio group.
    tag, attrs = _label_target(page, "Provider", byok)
    assert (tag, attrs["name"]) == ("select", "provider")
    tag, attrs = _label_target(page, "Key", byok)
    assert (tag, attrs["name"]) == ("input", "secret")
    tag, attrs = _label_target(page, "Credit ($)", top_up)
    assert (tag, attrs["name"]) == ("input", "credit")
    # Each radio of "Pay with" has its own label in the top-up form.
    tag, attrs = _label_target(page, PROVIDERS["dev"].label, top_up)
    assert (tag, attrs["type"], attrs["name"], attrs["value"]) == (
        "input",
        "radio",
        "provider",
        "dev",
    )


@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("billing:top_up_start", {"credit": "abc", "provider": "dev"}),
        ("billing:top_up_start", {"credit": "4.99", "provider": "dev"}),
        ("billing:provider_key_save", {"provider": "cloudflare", "secret": "abc12"}),
    ],
)
def test_ids_stay_unique_when_a_form_comes_back_with_errors(owner_client, url, data):
    response = owner_client.post(reverse(url), data)
    assert response.status_code == 200
    _assert_ids_unique_and_labels_own_their_controls(response.content.decode())


def _fill(page: _Page, action: str, **values: str) -> dict:
    """What a browser submits from the form at ``action``: defaults, then ``values`` typed in."""
    data: dict[str, str] = {}
    select = None
    for tag, attrs in page.controls[action]:
        name = attrs.get("name")
        if tag == "select":
            select = name
        elif tag == "option" and select and select not in data:
            data[select] = attrs["value"]
        elif tag == "input" and attrs.get("type") == "radio":
            if "checked" in attrs:
                data[name] = attrs["value"]
        elif tag == "input" and name:
            data[name] = attrs.get("value", "")
    return data | values


def test_both_forms_submit_what_the_page_renders(owner_client, owner):
    html = owner_client.get(reverse("billing:dashboard")).content.decode()
    page = parse(html)

    top_up = reverse("billing:top_up_start")
    response = owner_client.post(top_up, _fill(page, top_up, credit="12.50"))
    assert response.status_code == 302
    assert TopUp.objects.get(user=owner).credit == Decimal("12.50")

    byok = reverse("billing:provider_key_save")
    response = owner_client.post(byok, _fill(page, byok, secret="cf-Secret-abcdefgh-1234"))
    assert response.status_code == 302
    assert ProviderKey.objects.get(user=owner).provider == "cloudflare"


def test_a_stored_provider_key_is_listed_under_its_providers_name(owner_client, owner):
    """As the pricing box names the route ("Cloudflare Workers AI"), not its slug."""
    from billing.services.keys import provider_key_save

    provider_key_save(user=owner, provider="cloudflare", secret="cf-Secret-abcdefgh-1234")
    html = owner_client.get(reverse("billing:dashboard")).content.decode()
    row = html[html.index('<tr data-provider="cloudflare">') :]
    assert row[: row.index("</tr>")].startswith(
        '<tr data-provider="cloudflare"><td>Cloudflare Workers AI</td>'
    )
