"""The try page on a bad network, in a real browser (Debian's Chromium through Playwright,
see tests/test_browser.py): a lost poll is not a lost run, and an upload still on its way
is not sent twice.

- Polls of a paid run's state that fail (the browser offline, the server restarting) are
  asked again with a "connection lost" message; once they get through, the page draws the
  run, which was charged once. Before session 41 the first failed poll ended the page's
  following: "Failed to fetch" for good, while the run succeeded and was charged.
- A file picked while Run's upload is still on its way does not turn Run back on (a second
  press sent a second paid run at once, both drawn into one result area); a too-large file
  picked while the page still asks what Run costs keeps its refusal on screen; an upload
  the network drops says so and that Run may be pressed again.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from PIL import Image

from tests.test_browser import (  # noqa: F401  (the module's browser fixtures)
    BROWSER_MARKS,
    browser,
    page,
    wait_until,
    yolos_checkpoint,
)

pytestmark = BROWSER_MARKS

STATE = "document.getElementById('result').dataset.state || ''"
STATUS = "document.getElementById('status').textContent"


def _sign_in(page, username: str) -> None:  # noqa: F811
    page.goto("/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"pw-{username}-1")
    page.click("main form button[type=submit]")
    page.wait_for_url("**/account/")


def _picture(path, colour) -> str:
    Image.new("RGB", (320, 240), colour).save(path)
    return str(path)


@pytest.mark.worker
def test_failed_polls_are_retried_and_the_paid_run_is_drawn(
    page,  # noqa: F811
    start_worker,
    yolos_checkpoint,  # noqa: F811
    settings,
    tmp_path,
):
    from billing.models import Charge
    from billing.services.ledger import wallet_for
    from playground.models import Job
    from tests import factories

    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card(display_name="YOLOS flaky", checkpoint_local_dir=str(yolos_checkpoint))
    factories.route(card=card)
    user = factories.funded(factories.user(username="flaky"), "1")
    start_worker(env_extra={"VITRINE_ALLOW_UNTRAINED": "1"})

    _sign_in(page, "flaky")
    page.goto(f"/models/{card.model_id}/try")
    page.wait_for_selector("#demo-cost[data-pays=wallet]")

    # Every poll of the run's state fails as an offline browser's does, until let through.
    down = {"on": True, "failed": 0}

    def polls(route):
        if down["on"] and route.request.method == "GET":
            down["failed"] += 1
            return route.abort("internetdisconnected")
        return route.continue_()

    page.route("**/playground/jobs/*", polls)
    page.set_input_files("#try-form input[type=file]", _picture(tmp_path / "a.png", (30, 140, 220)))
    page.click("#run")
    wait_until(page, f"{STATE} === 'reconnecting' || {STATE} === 'error'")
    page.wait_for_timeout(2500)  # a second failed poll, still down
    assert page.evaluate(STATE) == "reconnecting", page.evaluate(STATUS)
    assert page.evaluate(STATUS).startswith("Connection lost"), page.evaluate(STATUS)
    assert page.locator("#run").is_disabled()
    assert down["failed"] >= 2

    down["on"] = False  # the network is back: the next try gets through
    page.wait_for_selector("body[data-job-status=succeeded]", timeout=120_000)
    assert page.evaluate(STATUS).startswith("Done:")
    job = Job.objects.get()
    assert job.status == "succeeded"
    assert [c.status for c in Charge.objects.all()] == ["posted"]
    assert wallet_for(user).balance == Decimal("0.9998")  # the route's $0.0002, once

    # Signed out in another tab while a run is followed: its polls answer 404 (a private
    # run); the page says why, not "HTTP 404".
    held = []
    page.unroute("**/playground/jobs/*")
    page.route(
        "**/playground/jobs/*",
        lambda r: held.append(r) if r.request.method == "GET" else r.continue_(),
    )
    page.goto(f"/models/{card.model_id}/try")
    page.wait_for_selector("#demo-cost[data-pays=wallet]")
    page.set_input_files("#try-form input[type=file]", _picture(tmp_path / "b.png", (9, 9, 9)))
    page.click("#run")
    while not held:
        page.wait_for_timeout(100)
    other = page.context.new_page()
    other.goto("/account/")
    other.click("form[action*=logout] button")
    other.wait_for_load_state()
    for route in held:
        route.continue_()
    page.unroute("**/playground/jobs/*")
    wait_until(page, f"{STATUS}.includes('signed out')")  # before session 41: "HTTP 404"
    assert page.evaluate(STATE) == "error"


def test_a_file_picked_during_an_upload_is_not_sent_at_once(
    page,  # noqa: F811
    settings,
    tmp_path,
):
    from playground.models import Job
    from tests import factories

    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_MAX_UPLOAD_BYTES = 200_000
    card = factories.card(display_name="YOLOS slow link")
    factories.route(card=card)

    held = []  # requests kept on the wire until the test lets them go
    page.route("**/try/state", lambda route: held.append(route))
    page.route("**/try", lambda r: held.append(r) if r.request.method == "POST" else r.continue_())
    page.goto(f"/models/{card.model_id}/try")
    page.wait_for_load_state("load")

    # A too-large file picked while the page still asks what Run costs: the refusal stays.
    big = tmp_path / "big.bmp.png"
    big.write_bytes(b"\x89PNG" + b"\0" * 300_000)
    page.set_input_files("#try-form input[type=file]", str(big))
    refusal = page.locator("#demo-cost").inner_text()
    assert refusal.startswith("That file is 300 kB; the limit is 200 kB."), refusal
    for route in held:
        route.continue_()
    held.clear()
    page.wait_for_selector("#demo-cost[data-pays]", state="attached")
    assert page.locator("#demo-cost").inner_text() == refusal
    assert page.locator("#run").is_disabled()

    page.set_input_files("#try-form input[type=file]", _picture(tmp_path / "a.png", (200, 40, 40)))
    page.click("#run")
    wait_until(page, f"{STATUS} === 'Uploading…'")
    page.set_input_files("#try-form input[type=file]", _picture(tmp_path / "b.png", (40, 200, 40)))
    assert page.locator("#run").is_disabled()  # one upload at a time

    posts = [r for r in held if r.request.method == "POST"]
    assert len(posts) == 1
    posts[0].abort("connectionreset")  # the network drops the upload
    wait_until(page, f"{STATE} === 'error'")
    assert page.evaluate(STATUS).startswith("The upload did not get through"), page.evaluate(STATUS)
    assert not page.locator("#run").is_disabled()  # b.png is chosen: Run sends it
    assert Job.objects.count() == 0

    # An example dropped while offline: said beside Run, not an unhandled rejection.
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.context.set_offline(True)
    example = page.evaluate("document.querySelector('[data-example]').dataset.example")
    drop = page.evaluate_handle(
        "(u) => { const t = new DataTransfer(); "
        "t.setData('text/uri-list', new URL(u, location.href).href); return t; }",
        example,
    )
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": drop})
    page.wait_for_timeout(1000)
    page.context.set_offline(False)
    assert errors == []
    assert page.locator("#demo-cost").inner_text().startswith("The example could not be loaded")


@pytest.mark.worker
def test_an_upload_whose_answer_was_lost_is_charged_once(
    page,  # noqa: F811
    start_worker,
    yolos_checkpoint,  # noqa: F811
    settings,
    tmp_path,
):
    """The upload reached the server (the job made, its price reserved) but the answer was
    lost on the way back; Run pressed again with the same file gets that run, not a second
    charge. Before session 41 the page sent no Idempotency-Key: two jobs, two charges."""
    from billing.models import Charge
    from playground.models import Job
    from tests import factories

    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card(display_name="YOLOS lost", checkpoint_local_dir=str(yolos_checkpoint))
    factories.route(card=card)
    factories.funded(factories.user(username="lost"), "1")
    start_worker(env_extra={"VITRINE_ALLOW_UNTRAINED": "1"})
    _sign_in(page, "lost")
    page.goto(f"/models/{card.model_id}/try")
    page.wait_for_selector("#demo-cost[data-pays=wallet]")

    # DevTools' Fetch domain at the response stage: the request reaches the server, and its
    # answer is held before the browser sees it; the first POST's answer is then dropped.
    answered = []
    cdp = page.context.new_cdp_session(page)

    def paused(event):
        if event["request"]["method"] != "POST":
            return cdp.send("Fetch.continueRequest", {"requestId": event["requestId"]})
        answered.append(event["responseStatusCode"])
        if len(answered) == 1:  # the server made the job; its answer never arrives
            return cdp.send(
                "Fetch.failRequest",
                {"requestId": event["requestId"], "errorReason": "ConnectionReset"},
            )
        return cdp.send("Fetch.continueRequest", {"requestId": event["requestId"]})

    cdp.on("Fetch.requestPaused", paused)
    cdp.send("Fetch.enable", {"patterns": [{"urlPattern": "*/try", "requestStage": "Response"}]})
    page.set_input_files("#try-form input[type=file]", _picture(tmp_path / "a.png", (1, 2, 3)))
    page.click("#run")
    wait_until(page, f"{STATE} === 'error'")
    assert page.evaluate(STATUS).startswith("The upload did not get through")
    assert answered == [202]
    assert Job.objects.count() == 1

    page.click("#run")  # the same file again
    page.wait_for_selector("body[data-job-status=succeeded]", timeout=120_000)
    assert answered == [202, 202]
    assert Job.objects.count() == 1
    assert [c.status for c in Charge.objects.all()] == ["posted"]
