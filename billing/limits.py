"""Abuse limits on the account pages: sign-in failures, sign-ups, password-reset mails.

As healthchecks does, every login, sign-up and password path is counted per client IP and
per account identity (username or email) in the shared limiter (catalog/ratelimit.py:
Redis, so the counts hold across web processes), never in the session a client can drop.

* Sign-in: ``VITRINE_LOGIN_FAILURES_PER_USER`` failures for one username (or
  ``VITRINE_LOGIN_FAILURES_PER_IP`` from one IP) within ``VITRINE_LOGIN_LOCKOUT_SECONDS``
  lock it until that window, counted from the first failure, ends. During the lockout even
  the right password is refused, with a message that says so: otherwise a guesser would
  learn the password the moment it is found. A successful sign-in clears its username's
  failures (not its IP's). Each attempt is counted before its password is checked, in the
  step that checks for room, and a right one is taken back: guesses sent at once cannot
  all pass a check that none of them has counted in yet.
  A browser that signed in as a username before (a signed cookie, OWASP's "device
  cookie") is counted on its own for that username instead: anyone can fill a username's
  count with wrong guesses, and it locked its owner out for as long as they kept at it;
  the owner's own browser now signs in through it, with its own five tries per window.
* Sign-up: ``VITRINE_SIGNUPS_PER_IP_PER_HOUR`` sign-up forms per IP, valid or not: a form
  with errors says whether an address already has an account, so asking that is bounded
  like creating accounts (a refused form is not validated).
* Password reset: ``VITRINE_PASSWORD_RESETS_PER_IP_PER_HOUR`` requests per IP (refused with
  429), and ``VITRINE_PASSWORD_RESETS_PER_EMAIL_PER_HOUR`` mails per mailbox: past that the
  page answers exactly as if a mail was sent, so the form never tells whether an address
  has an account.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from smtplib import SMTPException

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.core import signing
from django.core.mail import get_connection
from django.http import HttpResponseRedirect

from billing.emails import normalise_email
from catalog import ratelimit

logger = logging.getLogger(__name__)

HOUR = 3600
LOGIN_LOCKED = (
    "Too many failed sign-ins for this account or from your network. Sign-in is locked for "
    "{minutes} min, even with the right password; you can reset your password meanwhile. "
    "A browser you have signed in with before is not locked out by others' guesses."
)
SIGNUP_LIMITED = (
    "Too many sign-ups were tried from your network in the last hour. Try again in {minutes} min."
)
RESET_LIMITED = "Too many password-reset requests from your network. Try again in {minutes} min."
RESET_MAIL_AWAY = (
    "We cannot send mail just now, so no reset link was sent. Please try again in a few minutes."
)
RESET_MAIL_RETRY_AFTER = 60  # seconds
# What a mail server that is down, refusing or silent raises (socket errors and timeouts
# are OSError), and an address the mail cannot carry (UnicodeError).
MAIL_FAILURES = (SMTPException, OSError, UnicodeError)


def _with_retry_after(response, decision: ratelimit.Decision):
    response.status_code = 429
    response["Retry-After"] = str(decision.retry_after)
    return response


# --- sign-in -----------------------------------------------------------------------------
KNOWN_DEVICE_COOKIE = "vitrine_signed_in_before"
KNOWN_DEVICE_SALT = "billing.limits.known-device"
KNOWN_DEVICE_AGE = 180 * 24 * HOUR
KNOWN_DEVICE_NAMES = 5  # the usernames one browser is remembered for, latest first


def _name_tag(username: str) -> str:
    # The cookie names its usernames by a hash: a shared computer's cookies do not list them.
    # The username as signed in with (the form's, NFKC), not lower-cased: a sign-in matches
    # it exactly, and lower() takes look-alikes the sign-up form lets through (straẞe,
    # straße) for one, so signing in to one's own look-alike made a browser "known" for
    # another's account, with five more guesses at its password per browser.
    return hashlib.sha256(username.strip().encode()).hexdigest()[:20]


def _known_device(request) -> dict:
    """This browser's device cookie: ``{"d": device id, "u": [usernames]}``, or empty when
    there is none or it does not verify (signed with SECRET_KEY: not forgeable)."""
    raw = request.COOKIES.get(KNOWN_DEVICE_COOKIE)
    if not raw:
        return {}
    try:
        value = signing.loads(raw, salt=KNOWN_DEVICE_SALT, max_age=KNOWN_DEVICE_AGE)
    except signing.BadSignature:
        return {}
    ok = isinstance(value, dict) and isinstance(value.get("d"), str)
    return value if ok and isinstance(value.get("u"), list) else {}


def known_device_remember(request, response, username: str) -> None:
    """After a successful sign-in: this browser is known for ``username`` from now on."""
    device = _known_device(request)
    name = _name_tag(username)
    names = [name, *[n for n in device.get("u", []) if n != name]][:KNOWN_DEVICE_NAMES]
    value = {"d": device.get("d") or secrets.token_urlsafe(16), "u": names}
    response.set_cookie(
        KNOWN_DEVICE_COOKIE,
        signing.dumps(value, salt=KNOWN_DEVICE_SALT),
        max_age=KNOWN_DEVICE_AGE,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )


def login_buckets(request, username: str) -> tuple[ratelimit.Bucket, ratelimit.Bucket]:
    window = settings.VITRINE_LOGIN_LOCKOUT_SECONDS
    # The username exactly as a sign-in matches it (not lower-cased: a successful sign-in
    # to a look-alike account, straẞe for straße, cleared the other's count).
    name = username.strip()
    device = _known_device(request)
    if name and _name_tag(username) in device.get("u", []):
        # Signed in as this username from this browser before: its failures are its own,
        # not the username's count, which anyone can fill to lock its owner out.
        user = ratelimit.Bucket(
            "login-device",
            f"{device['d']}:{name}",
            settings.VITRINE_LOGIN_FAILURES_PER_USER,
            window,
        )
    else:
        user = ratelimit.Bucket(
            "login-user", name, settings.VITRINE_LOGIN_FAILURES_PER_USER, window
        )
    return (
        user,
        ratelimit.Bucket(
            "login-ip",
            ratelimit.client_network(request),
            settings.VITRINE_LOGIN_FAILURES_PER_IP,
            window,
        ),
    )


class LoginLimitMixin:
    """For a Django sign-in form: refused during a lockout, counting its failures."""

    lockout: ratelimit.Decision | None = None

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        buckets = login_buckets(self.request, username)
        # Counted as a failure before the password is checked, in the one atomic step that
        # checks for room (``hit``), and taken back if it is right. A peek now and a count
        # after the check let every guess in flight at once through: 19 concurrent guesses
        # were all checked against a limit of 5 (two uvicorn workers, session 40).
        decision = ratelimit.hit(*buckets)
        if not decision.allowed:
            self.lockout = decision
            raise forms.ValidationError(
                LOGIN_LOCKED.format(minutes=ratelimit.minutes(decision.retry_after)),
                code="locked_out",
            )
        cleaned = super().clean()  # a ValidationError leaves the failure counted
        if self.get_user() is None:
            # No password was checked (the form left one out: Django's clean() then raises
            # nothing), so nothing was proven: the attempt stays counted. Clearing here
            # let an empty password between guesses reset the username's count: 16
            # guesses checked against a limit of 5, then the right one signed in.
            return cleaned
        ratelimit.clear(buckets[0])
        ratelimit.release(buckets[1])
        return cleaned


class LimitedAuthenticationForm(LoginLimitMixin, AuthenticationForm):
    """The site's sign-in form."""


class LimitedAdminAuthenticationForm(LoginLimitMixin, AdminAuthenticationForm):
    """The admin's sign-in form: the same counters, so /admin/login/ is no side door."""


def limited_admin_login(login):
    """The admin site's sign-in view (``admin.site.login``) made to answer as the site's:
    a success makes this browser known for the username (it set no device cookie, so an
    operator who signs in at /admin/login/ was locked out by anyone filling the shared
    count, for as long as they kept guessing), and a lockout is a 429 with Retry-After."""

    @functools.wraps(login)
    def view(request, extra_context=None):
        response = login(request, extra_context)
        if request.method != "POST":
            return response
        if response.status_code == 302 and request.user.is_authenticated:
            known_device_remember(request, response, request.user.get_username())
            return response
        form = (getattr(response, "context_data", None) or {}).get("form")
        if form is not None and getattr(form, "lockout", None) is not None:
            return _with_retry_after(response, form.lockout)
        return response

    return view


class LimitedLoginView(auth_views.LoginView):
    form_class = LimitedAuthenticationForm

    def form_valid(self, form):
        response = super().form_valid(form)
        known_device_remember(self.request, response, form.cleaned_data["username"])
        return response

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.lockout is not None:
            return _with_retry_after(response, form.lockout)
        return response

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        form = context.get("form")
        if form is not None and form.lockout is not None:
            context["locked"] = LOGIN_LOCKED.format(
                minutes=ratelimit.minutes(form.lockout.retry_after)
            )
        return context


# --- sign-up -----------------------------------------------------------------------------
def signup_admit(request) -> ratelimit.Decision:
    """Count one sign-up form sent from this IP (valid or not), or refuse it (nothing
    counted): the caller asks before it validates the form."""
    bucket = ratelimit.Bucket(
        "signup-ip",
        ratelimit.client_network(request),
        settings.VITRINE_SIGNUPS_PER_IP_PER_HOUR,
        HOUR,
    )
    return ratelimit.hit(bucket)


def signup_refused(response, decision: ratelimit.Decision):
    return _with_retry_after(response, decision)


# --- password reset ------------------------------------------------------------------------
# A reset mail is sent after the answer, on one thread of the process: sent within the
# request, it made the answer slower for an address with an account than for one without
# by the mail server's whole transaction (12.3 against 8.3 ms median with a local server,
# session 48's probe; a remote one widens it), which told which addresses exist. The request
# now does the same work for both (the mail server asked first, the account looked up) and
# only hands the mail over. One thread: mails go out in the order asked; the interpreter's
# exit waits for those still queued (a pool process recycled or stopped sends them first).
_RESET_MAILER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reset-mail")


def reset_mails_sent(timeout: float = 60) -> None:
    """Return once every reset mail asked for so far has been sent (or has failed)."""
    _RESET_MAILER.submit(lambda: None).result(timeout)


class AfterTheAnswerPasswordResetForm(PasswordResetForm):
    """Django's reset form, its mail handed to the reset thread (``_RESET_MAILER``). Django's
    ``send_mail`` logs a mail that failed (naming the account by its id) and raises
    nothing: said on no page, as telling would tell the address has an account."""

    def send_mail(self, *args, **kwargs) -> None:
        _RESET_MAILER.submit(super().send_mail, *args, **kwargs)


class LimitedPasswordResetView(auth_views.PasswordResetView):
    form_class = AfterTheAnswerPasswordResetForm

    def form_valid(self, form):
        ip_bucket = ratelimit.Bucket(
            "reset-ip",
            ratelimit.client_network(self.request),
            settings.VITRINE_PASSWORD_RESETS_PER_IP_PER_HOUR,
            HOUR,
        )
        decision = ratelimit.hit(ip_bucket)
        if not decision.allowed:
            form.add_error(
                None, RESET_LIMITED.format(minutes=ratelimit.minutes(decision.retry_after))
            )
            return _with_retry_after(self.form_invalid(form), decision)
        email_bucket = ratelimit.Bucket(
            "reset-email",
            normalise_email(form.cleaned_data["email"]),
            settings.VITRINE_PASSWORD_RESETS_PER_EMAIL_PER_HOUR,
            HOUR,
        )
        if not ratelimit.hit(email_bucket).allowed:
            # Same answer as a sent mail: the page must not reveal which addresses exist
            # (or that this one is being flooded). Only the mailbox is spared.
            return HttpResponseRedirect(self.get_success_url())
        # The mail server is asked first, whatever the address: one that cannot be reached
        # (down, refusing, silent past EMAIL_TIMEOUT) is said so on the form, the same for
        # every address (a 500 page before session 44). The mail itself goes after the
        # answer (``_RESET_MAILER``).
        try:
            with get_connection():
                pass
        except MAIL_FAILURES:
            logger.warning("password reset: the mail server cannot be reached", exc_info=True)
            form.add_error(None, RESET_MAIL_AWAY)
            response = self.form_invalid(form)
            response.status_code = 503
            response["Retry-After"] = str(RESET_MAIL_RETRY_AFTER)
            return response
        return super().form_valid(form)
