"""A renamed model (its own slug or its organisation's) keeps its former id working, as a
renamed Hugging Face repository does: the old pages redirect (301, query kept), API calls
naming the old id run the renamed card in every flavour, the jobs filter and the compare
pages take it; a card that takes the old id later owns it again."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from PIL import Image

from billing.services.keys import api_key_create
from billing.services.topups import credit_grant
from catalog.models import ModelIdAlias
from playground.models import Job
from tests import factories

pytestmark = pytest.mark.django_db


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 100, 90)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def card():
    card = factories.card(organisation=factories.organisation(slug="acme"), slug="old-detr")
    factories.route(card=card)
    return card


@pytest.fixture
def auth(other_user, settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    credit_grant(user=other_user, amount=Decimal("1"), reason="test")
    _, key = api_key_create(user=other_user, name="ci")
    return {"Authorization": f"Bearer {key}"}


def rename(card, slug: str):
    card.slug = slug
    card.save()


def test_a_renamed_models_old_pages_redirect_to_the_new_ones(client, card):
    rename(card, "new-detr")
    page = client.get("/models/acme/old-detr?tab=api")
    assert page.status_code == 301
    assert page["Location"] == "/models/acme/new-detr?tab=api"
    assert client.get(page["Location"]).status_code == 200
    try_page = client.get("/models/acme/old-detr/try")
    assert (try_page.status_code, try_page["Location"]) == (301, "/models/acme/new-detr/try")
    # Any case, as ids are unique in any case.
    assert client.get("/models/ACME/Old-DETR")["Location"] == "/models/acme/new-detr"
    # An id that never was stays the 404 with its suggestions.
    assert client.get("/models/acme/never-was").status_code == 404


def test_api_calls_naming_the_old_id_run_the_renamed_card_in_every_flavour(
    client, card, auth, django_capture_on_commit_callbacks
):
    rename(card, "new-detr")
    with django_capture_on_commit_callbacks():
        answer = client.post(
            "/v1/inference/acme/old-detr", data=jpeg(), content_type="image/jpeg",
            headers={**auth, "Prefer": "respond-async"},
        )  # fmt: skip
    assert answer.status_code == 202, answer.content
    assert Job.objects.get(pk=answer.json()["id"]).card_id == card.pk
    # The drop-in flavours answer synchronously: an empty wallet's 402 (not the 404 an
    # unknown id gets) shows the old id found the card, without running it.
    _, empty = api_key_create(user=factories.user(), name="empty")
    for path in ("/hf/models/acme/{}", "/client/v4/accounts/acct123/ai/run/@cf/acme/{}"):
        codes = [
            client.post(
                path.format(name), data=jpeg(), content_type="image/jpeg",
                headers={"Authorization": f"Bearer {empty}"},
            ).status_code
            for name in ("old-detr", "never-was")
        ]  # fmt: skip
        assert codes == [402, 404], path
    # The model's entry, and the jobs filter, by the old id.
    entry = client.get("/v1/models/acme/old-detr", headers=auth)
    assert entry.status_code == 200 and entry.json()["id"] == "acme/new-detr"
    listed = client.get("/v1/jobs?model=acme/old-detr", headers=auth)
    assert listed.status_code == 200 and len(listed.json()["data"]) == 1


def test_an_organisation_renamed_keeps_its_cards_and_its_page_reachable(client, card):
    org = card.organisation
    org.slug = "acme-labs"
    org.save()
    assert client.get("/models/acme/old-detr")["Location"] == "/models/acme-labs/old-detr"
    assert client.get("/orgs/acme")["Location"] == "/orgs/acme-labs"
    assert client.get("/orgs/nobody").status_code == 404


def test_a_card_that_takes_the_old_id_owns_it_again(client, card):
    rename(card, "new-detr")
    newcomer = factories.card(organisation=card.organisation, slug="old-detr")
    factories.route(card=newcomer)
    assert not ModelIdAlias.objects.exists()
    assert client.get("/models/acme/old-detr").status_code == 200
    assert client.get("/v1/models/acme/old-detr").json()["id"] == "acme/old-detr"


def test_renaming_back_and_forth_leaves_one_alias_per_former_id(card):
    rename(card, "b")
    rename(card, "c")
    rename(card, "old-detr")  # back to its first name: that id is its own again
    assert sorted(ModelIdAlias.objects.values_list("model_id", flat=True)) == ["acme/b", "acme/c"]
    rename(card, "Old-Detr")  # a change of case only is no new id
    assert ModelIdAlias.objects.count() == 2


def test_a_comparison_shared_before_the_rename_still_opens(client, card):
    other = factories.card(organisation=card.organisation, slug="other")
    factories.route(card=other)
    rename(card, "new-detr")
    page = client.get("/compare?models=acme/old-detr,acme/other")
    assert page.status_code == 301
    assert page["Location"] == "/compare?models=acme/new-detr,acme/other"
    assert client.get(page["Location"]).status_code == 200
    # The try-on-your-image comparison too: both models offered, the renamed one by name.
    pick = client.get("/compare/run?models=acme/old-detr,acme/other")
    assert pick.status_code == 200
    assert [c["card"] for c in pick.context["choices"]] == [card, other]


def test_the_admin_lists_former_ids_and_finds_a_card_by_one(client, card, staff_client):
    rename(card, "new-detr")
    change = staff_client.get(f"/admin/catalog/modelcard/{card.pk}/change/")
    assert b"acme/old-detr" in change.content
    found = staff_client.get("/admin/catalog/modelcard/?q=acme/old-detr")
    assert found.context["cl"].result_count == 1


@pytest.mark.parametrize("update", [False, True], ids=["load", "update"])
def test_loading_the_seed_again_brings_back_no_twin_of_a_renamed_model(update):
    from django.core.management import call_command

    from catalog.models import ModelCard, Organisation

    call_command("seed_catalog", verbosity=0)
    cards, orgs = ModelCard.objects.count(), Organisation.objects.count()
    detr = ModelCard.objects.by_model_id("facebook/detr-resnet-50").get()
    rename(detr, "detr-r50")
    hustvl = Organisation.objects.get(slug="hustvl")
    hustvl.slug = "hust"
    hustvl.save()

    call_command("seed_catalog", *(["--update"] if update else []), verbosity=0)

    assert (ModelCard.objects.count(), Organisation.objects.count()) == (cards, orgs)
    assert ModelCard.objects.by_model_id("facebook/detr-r50").exists()
    assert ModelCard.objects.by_model_id("hust/yolos-tiny").exists()


def test_a_renamed_card_taken_down_is_not_told_by_its_former_id(client, card, auth, other_user):
    # An operator renames a card and unpublishes it (a draft again, say before a relaunch
    # under its new name): its former id must not tell anyone the new, unpublished id.
    rename(card, "secret-v2")
    card.is_published = False
    card.save()
    for path in (
        "/models/acme/old-detr",
        "/models/acme/old-detr/try",
        "/compare?models=acme/old-detr,acme/other",
    ):
        page = client.get(path)
        assert page.status_code != 301, path
        assert b"secret-v2" not in page.content, path
        assert "secret-v2" not in page.get("Location", ""), path
    # A draft's id is not told by the jobs filter either (playground.selectors).
    listed = client.get("/v1/jobs?model=acme/old-detr", headers=auth)
    assert listed.status_code == 400
    assert "secret-v2" not in listed.content.decode()


def test_a_taken_down_renamed_card_still_filters_its_owners_jobs_by_the_former_id(
    client, card, auth, other_user, settings, tmp_path
):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    factories.finished_run(card=card, image_bytes=jpeg(), result=[], owner=other_user)
    rename(card, "secret-v2")
    card.is_published = False
    card.save()
    # Their own jobs of it: the filter takes its former id, as it takes its new one.
    listed = client.get("/v1/jobs?model=acme/old-detr", headers=auth)
    assert listed.status_code == 200, listed.content
    assert len(listed.json()["data"]) == 1
