"""The account forms as the site lays them out (templates/_form_fields.html), not Django's
stock as_div: labels without a colon, each help text under its input, a checkbox on its
label's line, a key's allowed models as named checkboxes in A-Z order; a paid top-up said in
green."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from tests import factories

pytestmark = pytest.mark.django_db


def test_sign_up_labels_have_no_colon_and_help_comes_under_its_input(client):
    html = client.get(reverse("billing:signup")).content.decode()
    for field, label in [("username", "Username"), ("email", "Email"), ("password1", "Password")]:
        assert f'<label for="id_{field}">{label}</label>' in html
        # label, then the input (which names its help), then the help
        label_at = html.index(f'<label for="id_{field}">')
        tag = re.search(rf'<input[^>]*id="id_{field}"[^>]*>', html)
        help_at = html.index(f'id="id_{field}_helptext"')
        assert label_at < tag.start() < help_at
        assert f"id_{field}_helptext" in tag.group()
    assert not re.search(r"<label[^>]*>[^<]*:</label>", html)
    login = client.get(reverse("billing:login")).content.decode()
    assert '<label for="id_username">Username</label>' in login
    assert not re.search(r"<label[^>]*>[^<]*:</label>", login)


def test_the_forfeit_checkbox_sits_before_its_label(client):
    user = factories.user(username="ada")
    factories.funded(user, "5")
    client.force_login(user)
    html = client.get(reverse("billing:account_delete")).content.decode()
    field = re.search(r'<div class="field field-check">(.*?)</div>', html, re.S).group(1)
    assert re.match(r'\s*<input type="checkbox" name="forfeit"[^>]*id="id_forfeit"', field)
    assert (
        '<label for="id_forfeit">I understand that my $5 of credit will be lost.</label>' in field
    )


def test_a_keys_models_are_checkboxes_named_as_the_site_names_them_a_to_z(client):
    for name in ("Zeta net", "alpha det", "Beta det"):
        factories.card(display_name=name)
    client.force_login(factories.user(username="owner"))
    html = client.get(reverse("billing:dashboard")).content.decode()
    form = html.split('id="create-key"')[1].split("</form>")[0]
    assert 'type="checkbox" name="allowed_models"' in form and "<select" not in form
    names = re.findall(
        r'<input type="checkbox" name="allowed_models"[^>]*>\s*([^<]+?)\s*</label>', form
    )
    assert names == ["alpha det", "Beta det", "Zeta net"]
    assert re.search(r"<legend>Allowed models</legend>", form)
    assert '<label for="id_top_up_credit">Credit ($)</label>' in html


@pytest.mark.parametrize(("state", "kind"), [("done", "ok"), ("pending", "info")])
def test_a_paid_top_up_is_said_in_green_one_awaiting_confirmation_in_blue(client, state, kind):
    client.force_login(factories.user(username="owner"))
    html = client.get(reverse("billing:dashboard"), {"top_up": state}).content.decode()
    assert f'<p class="notice {kind}" id="top-up-notice">Payment received' in html


def test_a_long_key_name_is_a_cell_that_wraps(client):
    from billing.services.keys import api_key_create

    user = factories.user(username="owner")
    api_key_create(user=user, name="x" * 100, monthly_spend_cap=Decimal("5"))
    client.force_login(user)
    html = client.get(reverse("billing:dashboard")).content.decode()
    assert f'<td class="key-name">{"x" * 100}</td>' in html
