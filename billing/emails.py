"""Email addresses as identities: one canonical form per mailbox, for limits and sign-up credit.

Pure rules, no ORM. ``Ada.Lovelace+vitrine@Gmail.com`` and ``adalovelace@gmail.com`` reach
the same inbox, so they must not each earn sign-up credit or each get three reset mails.
"""

from __future__ import annotations

# Providers that ignore dots in the local part (Gmail and its old domain).
DOTLESS_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
DOMAIN_ALIASES = {"googlemail.com": "gmail.com"}


def _unquote_local(local: str) -> str:
    """The local part with its quoting undone: ``"ada.lovelace"`` is ``ada.lovelace`` and
    ``"a\\"b"`` is ``a"b`` (RFC 5321 quoted-string; quoted pieces between dots too).

    A mail server delivers the quoted and the bare spelling of a name to one mailbox, so
    the quotes must not make a new identity."""
    if '"' not in local:
        return local
    out: list[str] = []
    quoted = escaped = False
    for char in local:
        if escaped:
            out.append(char)
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        else:
            out.append(char)
    return "".join(out)


def mail_domain(domain: str) -> str | None:
    """The domain as the mail is sent to it: IDNA's ASCII form, by the codec Django's mail
    uses (``django.utils.encoding.punycode``). Its mapping drops what a reader cannot see
    and folds look-alike forms: ``exa\u00admple.org`` (a soft hyphen), ``exa\u200bmple.org``
    (a zero-width space) and ``\uff45xample.org`` (a full-width e) are all ``example.org``,
    and ``über.example`` is ``xn--ber-goa.example``. None for a domain no mail can be sent
    to (one holding a bidi override, U+202E): Django's validator lets it through, and the
    mail then raised ``UnicodeError``."""
    try:
        return domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None


def normalise_email(email: str) -> str:
    """The mailbox an address reaches, as one string.

    * A quoted local part is unquoted first (``"ada.lovelace"@`` is ``ada.lovelace@``), its
      escapes undone, so the rules below see the name the mailbox has.
    * Lowercase, whole address: in practice no provider delivers by local-part case.
    * The domain as the mail is sent to it (``mail_domain``): invisible characters and
      full-width letters in it reached the same inbox as a new address each, and each
      earned the sign-up credit again (session 43's outside probe).
    * A ``+tag`` is dropped on every domain: Gmail, Outlook, Fastmail, iCloud and most hosts
      deliver ``name+anything@`` to ``name@``; a host that does not is rare, and the cost of
      a false match is only that two such addresses share one sign-up credit.
    * Dots are dropped only on Gmail, where ``a.da@`` is ``ada@``; elsewhere a dot is part
      of the name.
    """
    email = email.strip().lower()
    local, at, domain = email.rpartition("@")
    if not at or not local:
        return email
    domain = mail_domain(domain) or domain
    domain = DOMAIN_ALIASES.get(domain, domain)
    local = _unquote_local(local)
    local = local.split("+", 1)[0]
    if domain in DOTLESS_DOMAINS:
        local = local.replace(".", "")
    return f"{local}@{domain}"
