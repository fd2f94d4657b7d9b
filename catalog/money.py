"""What a money value may be to be kept exactly by every database Vitrine runs on.

PostgreSQL's ``numeric`` keeps any value its column's digits allow. SQLite (the embedded
default) stores a decimal column's value as a double and Django gives it back rounded to 15
significant digits, so a value of up to 15 significant digits comes back exactly, and a
longer one does not: ``12345678.1234567891`` came back ``12345678.1234568``, and
``99999999.9999999999`` (a price the form allowed) came back as 100000000, which no longer
fit its column and made every page that read it a 500. Operator and visitor inputs of money
are held to ``SIGNIFICANT_DIGITS``; sums of such values within the ledger's range keep to it.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError

SIGNIFICANT_DIGITS = 15
TOO_MANY_DIGITS = (
    "At most %(digits)s significant digits (e.g. 12345.6789012345 or 0.0000075): "
    "a longer amount would not be kept exactly."
)


def significant_digits(value: Decimal) -> int:
    """Digits from the first non-zero one to the last one written (trailing zeros of the
    fraction do not count): 0.0000075 has 2, 12.50 has 3."""
    _sign, digits, exponent = value.normalize().as_tuple()
    if not isinstance(exponent, int):  # NaN, Infinity: the field refuses them itself
        return 0
    return len(digits) if any(digits) else 0


def validate_exact(value: Decimal) -> None:
    """A field validator: refuse a money value no database would give back as written."""
    if value is not None and significant_digits(Decimal(value)) > SIGNIFICANT_DIGITS:
        raise ValidationError(
            TOO_MANY_DIGITS, code="too_many_digits", params={"digits": SIGNIFICANT_DIGITS}
        )
