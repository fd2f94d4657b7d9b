"""Mail through a real SMTP server (aiosmtpd on loopback), configured from the environment
as production configures it, and what a password reset answers when that server is down
or silent."""

from __future__ import annotations

import contextlib
import re
import socket
import threading

import pytest
from aiosmtpd.controller import Controller
from django.test import Client
from django.urls import reverse

from billing import limits
from tests import factories
from tests.config.test_settings import load_settings
from tests.conftest import free_port

pytestmark = pytest.mark.django_db

SMTP = "django.core.mail.backends.smtp.EmailBackend"


class Inbox:
    def __init__(self):
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd calls it by this name
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server on loopback; the app's mail goes to it."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = SMTP
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    try:
        yield inbox
    finally:
        controller.stop()


@contextlib.contextmanager
def listening(*, silent: bool):
    """A loopback port: silent (a server that accepts and never greets, as a hung one), or
    closed (nothing listens: the mail server is down)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    if not silent:
        server.close()
    try:
        yield port
    finally:
        with contextlib.suppress(OSError):
            server.close()


def reset(email: str, ip: str = "192.0.2.1"):
    return Client().post(reverse("billing:password_reset"), {"email": email}, REMOTE_ADDR=ip)


def test_a_password_reset_goes_through_the_configured_mail_server(smtp_server, limits_redis):
    factories.user(username="grace", email="grace@example.com")
    response = reset("grace@example.com")
    assert (response.status_code, response["Location"]) == (
        302,
        reverse("billing:password_reset_done"),
    )
    limits.reset_mails_sent()  # sent after the answer
    (message,) = smtp_server.messages
    assert message.rcpt_tos == ["grace@example.com"]
    assert b"/accounts/reset/" in message.content


@pytest.mark.parametrize("silent", [False, True], ids=["down", "silent"])
def test_a_password_reset_while_the_mail_server_is_away_says_so_for_every_address(
    settings, limits_redis, silent
):
    """Down (refused) or silent (past EMAIL_TIMEOUT): the form says no link was sent, 503
    with Retry-After, the same for an address with an account and one without (a 500 page
    before session 44, and a silent server held the request without end)."""
    factories.user(username="grace", email="grace@example.com")
    settings.EMAIL_BACKEND, settings.EMAIL_TIMEOUT = SMTP, 1
    answers = []
    with listening(silent=silent) as port:
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        for address in ("grace@example.com", "nobody@example.com"):
            thread = threading.Thread(target=lambda a=address: answers.append(reset(a)))
            thread.start()
            thread.join(120)  # EMAIL_TIMEOUT is 1 s: a request still held is the bug
            assert not thread.is_alive(), "the request is held by the mail server"
    for response in answers:
        assert response.status_code == 503
        assert response["Retry-After"] == str(limits.RESET_MAIL_RETRY_AFTER)
        assert "We cannot send mail just now" in response.content.decode()
    # Nothing tells which address exists: the pages differ only in their form's token.
    pages = [re.sub(r'value="[^"]*"', "", r.content.decode()) for r in answers]
    assert pages[0] == pages[1]


def test_mail_settings_come_from_the_environment():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_HOST_USER, s.EMAIL_USE_TLS, s.EMAIL_TIMEOUT)"
    )
    result = load_settings(
        code, EMAIL_HOST="smtp.example.com", EMAIL_PORT="587", EMAIL_HOST_USER="vitrine",
        EMAIL_HOST_PASSWORD="pw", EMAIL_USE_TLS="1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["smtp.example.com", "587", "vitrine", "True", "10"]
    both = load_settings(code, EMAIL_USE_TLS="1", EMAIL_USE_SSL="1")
    assert "ImproperlyConfigured: Set EMAIL_USE_TLS (STARTTLS) or EMAIL_USE_SSL" in both.stderr
