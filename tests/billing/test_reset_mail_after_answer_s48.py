"""A password reset answers before its mail is sent (session 48's security probe): sent
within the request, the answer for an address with an account waited for the mail
server's whole transaction and the one for an unknown address did not, which told which
addresses have an account (12.3 against 8.3 ms median with a local server). Proved here
without a clock: a real SMTP server that holds each mail's DATA until the test lets it go
answers nothing until then, yet both resets have been answered."""

from __future__ import annotations

import asyncio
import logging
import re
import threading

import pytest
from aiosmtpd.controller import Controller
from django.test import Client
from django.urls import reverse

from billing import limits
from tests import factories
from tests.billing.test_mail_server_s44 import SMTP
from tests.conftest import free_port

pytestmark = pytest.mark.django_db


class HeldInbox:
    """An SMTP server's handler that keeps each mail's DATA waiting until ``release``."""

    def __init__(self):
        self.messages: list = []
        self.arrived = threading.Event()
        self.released = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd calls it by this name
        self.arrived.set()
        while not self.released.is_set():
            await asyncio.sleep(0.01)
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def held_smtp(settings):
    inbox = HeldInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND, settings.EMAIL_TIMEOUT = SMTP, 120
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    try:
        yield inbox
    finally:
        inbox.released.set()
        limits.reset_mails_sent()
        controller.stop()


def reset(email: str, ip: str):
    return Client().post(reverse("billing:password_reset"), {"email": email}, REMOTE_ADDR=ip)


def test_the_answer_does_not_wait_for_the_mail_and_is_the_same_for_every_address(
    held_smtp, limits_redis
):
    factories.user(username="grace", email="grace@example.com")
    known = reset("grace@example.com", "192.0.2.1")
    unknown = reset("nobody@example.com", "192.0.2.2")

    # Both answered while the one mail is still held in its DATA by the server.
    for response in (known, unknown):
        assert (response.status_code, response["Location"]) == (
            302,
            reverse("billing:password_reset_done"),
        )
    assert held_smtp.arrived.wait(60)  # the mail to grace is in the server's hands...
    assert held_smtp.messages == []  # ...and not yet accepted
    held_smtp.released.set()
    limits.reset_mails_sent()
    (message,) = held_smtp.messages
    assert message.rcpt_tos == ["grace@example.com"]
    assert re.search(rb"/accounts/reset/\S+/\S+/", message.content)


def test_a_mail_the_server_refuses_after_the_answer_is_logged_not_said(
    settings, limits_redis, caplog
):
    factories.user(username="grace", email="grace@example.com")

    class Refusing:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            return "550 no such mailbox here"

    controller = Controller(Refusing(), hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = SMTP
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    try:
        with caplog.at_level(logging.ERROR, logger="django.contrib.auth"):
            response = reset("grace@example.com", "192.0.2.3")
            limits.reset_mails_sent()
    finally:
        controller.stop()
    assert response.status_code == 302  # as sent: telling would tell the address exists
    # Logged by Django's reset form itself, naming the account by its id, not its address.
    failed = [r.getMessage() for r in caplog.records if r.name == "django.contrib.auth"]
    assert failed and all("Failed to send password reset email" in m for m in failed)
    assert not any("grace@example.com" in m for m in failed)
