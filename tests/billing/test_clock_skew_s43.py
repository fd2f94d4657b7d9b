"""A web machine whose clock is off by more than Stripe's tolerance (300 s) refuses every
correctly signed top-up event (session 43). The answer stays Stripe's 400, and the log says
why (the timestamp, so the clock), not only "a bad signature", which reads as a wrong secret.
"""

from __future__ import annotations

import logging
import time

from tests.billing.test_stripe_webhook import (  # noqa: F401 (fixtures)
    NOTHING,
    checkout_event,
    deliver,
    money,
    payer,
    sign,
    stripe_client,
    stripe_settings,
    top_up,
)


def test_an_event_signed_beyond_the_tolerance_is_logged_as_a_clock_matter(
    stripe_client,  # noqa: F811
    payer,  # noqa: F811
    top_up,  # noqa: F811
    caplog,
):
    payload = checkout_event(top_up)
    # Signed 400 s before this machine's "now": a clock 400 s ahead sees this.
    signature = sign(payload, timestamp=int(time.time()) - 400)
    with caplog.at_level(logging.WARNING, logger="billing.webhooks"):
        response = deliver(stripe_client, payload, signature)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_signature"
    assert "Timestamp outside the tolerance zone" in caplog.text, caplog.text
    assert money(payer) == NOTHING
