"""A database row carried to another process reads back as the same Python values.

A worker sends a finished job's answer row to the waiting web process inside its finished
signal (``catalog.db.row_encode``); the web process builds the answer from it exactly as
from a read of the row, so every value must come back equal and of the same type, and
anything the codec does not know is refused rather than guessed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from catalog.db import row_decode, row_encode
from playground import events, selectors

ROW = (
    uuid.UUID("6b240ae2-4b77-404c-8dfc-648c7c6dada0"),
    datetime(2026, 12, 2, 13, 27, 6, 686432, tzinfo=UTC),
    datetime(2026, 12, 2, 14, 0, tzinfo=timezone(timedelta(hours=1))),
    Decimal("0.00100"),  # its exponent kept: money is shown as stored
    Decimal("-12345678901234567890.123456789"),
    42,
    2**63 - 1,
    0.1 + 0.2,  # the shortest repr that reads back exactly
    1e-300,
    True,
    False,
    None,
    "",
    'a "quoted" text with \u00e9 and \u2603 and a \n newline',
    '[{"label": "cat", "score": 0.91}]',  # a JSON column arrives as text
)


def test_a_row_reads_back_equal_and_of_the_same_types():
    back = row_decode(row_encode(ROW))
    assert back == ROW
    assert [type(v) for v in back] == [type(v) for v in ROW]
    assert back[3].as_tuple() == ROW[3].as_tuple()
    assert back[2].utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize(
    "value",
    [datetime(2026, 12, 2), b"bytes", [1, 2], {"a": 1}, object()],
    ids=["naive datetime", "bytes", "list", "dict", "object"],
)
def test_a_value_it_does_not_know_is_refused(value):
    with pytest.raises(TypeError):
        row_encode((1, value))


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"[]", b'{"k": "s"}', b'{"k": "ss", "r": ["a"]}',
     b'{"k": "t", "r": ["yesterday"]}', b'{"k": "d", "r": ["ten"]}', b'{"k": "u", "r": ["x"]}',
     b'{"k": "u", "r": [1]}'],
)  # fmt: skip
def test_data_that_is_not_a_row_is_a_value_error(data):
    with pytest.raises(ValueError):
        row_decode(data)


def test_a_signal_without_a_readable_row_gives_none(caplog):
    width = selectors._ANSWER.width
    row = (None,) * width
    assert events.carried_answer(events.ANSWER + selectors.answer_encode(row)) == row
    assert events.carried_answer(events.FINAL) is None
    assert events.carried_answer(True) is None and events.carried_answer(False) is None
    assert "could not be read" not in caplog.text
    # A worker of another release (other columns) is read from the row, silently.
    assert events.carried_answer(events.ANSWER + b"0123456789abcdef:" + row_encode(row)) is None
    assert "could not be read" not in caplog.text
    # Broken data, or a row of another width under these columns' digest, are logged.
    shape = selectors.answer_encode(row).partition(b":")[0]
    assert events.carried_answer(events.ANSWER + shape + b":{broken") is None
    assert events.carried_answer(events.ANSWER + shape + b":" + row_encode(row[1:])) is None
    assert caplog.text.count("could not be read") == 2
