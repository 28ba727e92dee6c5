"""Which database errors are the data's fault (dead-letter the fact, answer 400) and which
are the database's (wait, retry): services.common.db.refused_by_database."""

import asyncpg
import pytest
from asyncpg.exceptions import _base as asyncpg_base

from services.common.db import DATABASE_UNAVAILABLE, describe_refusal, refused_by_database
from services.common.validation import as_free_text, text_problem


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00'),
        asyncpg.UntranslatableCharacterError("unsupported Unicode escape sequence"),
        asyncpg.NumericValueOutOfRangeError("bigint out of range"),
        asyncpg.DatetimeFieldOverflowError("date/time field value out of range"),
        asyncpg.DataError("invalid input for query argument $1 (value out of int64 range)"),
        asyncpg.UniqueViolationError("duplicate key value violates unique constraint"),
        asyncpg.ForeignKeyViolationError("violates foreign key constraint"),
        asyncpg.CheckViolationError("violates check constraint"),
        asyncpg.NotNullViolationError("null value in column"),
        asyncpg.ProgramLimitExceededError("index row size 3000 exceeds btree maximum, 2704"),
        asyncpg_base.DataError("invalid input for query argument $2"),
        OverflowError("value out of int64 range"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_the_datas_fault(error):
    assert refused_by_database(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.SerializationError("could not serialize access"),
        asyncpg.DeadlockDetectedError("deadlock detected"),
        asyncpg.LockNotAvailableError("could not obtain lock"),
        asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.TooManyArgumentsError("too many arguments"),  # a fault of the code
        asyncpg.UndefinedTableError('relation "principals" does not exist'),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.InterfaceError("connection is closed"),
        ConnectionResetError(),
        TimeoutError(),
        KeyError(99),
        ValueError("a fault of the code"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_not_the_datas_fault(error):
    assert not refused_by_database(error)


def test_an_outage_is_still_waited_out_and_never_taken_for_bad_data():
    for error in (asyncpg.AdminShutdownError("x"), ConnectionRefusedError(), TimeoutError()):
        assert isinstance(error, DATABASE_UNAVAILABLE) and not refused_by_database(error)
    # asyncpg's own argument refusal is an InterfaceError, which DATABASE_UNAVAILABLE
    # matches: whoever classifies must ask refused_by_database first.
    client_side = asyncpg_base.DataError("invalid input for query argument $1")
    assert isinstance(client_side, DATABASE_UNAVAILABLE) and refused_by_database(client_side)


def test_a_refusal_is_described_by_its_sqlstate_and_never_quotes_the_detail():
    error = asyncpg.PostgresError.new(
        {
            "M": 'invalid byte sequence for encoding "UTF8": 0x00',
            "C": "22021",
            "D": "the secret value",
        }
    )
    assert isinstance(error, asyncpg.CharacterNotInRepertoireError)
    assert describe_refusal(error) == (
        'CharacterNotInRepertoire (SQLSTATE 22021): invalid byte sequence for encoding "UTF8": 0x00'
    )


def test_free_text_from_a_program_is_made_to_fit_its_field():
    reason = "bad page\n\tat offset 4\x00\x1b[2J" + "x" * 5000
    cleaned = as_free_text(reason, "rejection_reason")
    assert text_problem("rejection_reason", cleaned) is None
    assert cleaned.startswith("bad page\n\tat offset 4\ufffd\ufffd[2J") and len(cleaned) == 4000
    assert as_free_text("short", "reason") == "short"


@pytest.mark.parametrize(
    ("field", "value", "phrase"),
    [
        ("dataset_name", "a\x00", "U+0000 at position 1: it must be one line of printable text"),
        ("reason", "a\x00", "only line breaks and tabs are allowed in it"),
        ("file_name", "f" * 256, "file_name must be at most 255 characters, got 256"),
        ("contribution_id", "c" * 201, "at most 200 characters"),
        ("name", "\x9b", "U+009B"),
    ],
)
def test_text_problems_are_worded_for_the_field(field, value, phrase):
    assert phrase in text_problem(field, value)
