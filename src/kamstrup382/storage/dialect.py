"""What differs between the SQL of SQLite and of PostgreSQL, as data: one :class:`Dialect` each.

The queries themselves are written once (:mod:`kamstrup382.storage.sql`) and read from the
dialect only what really differs:

- the parameter placeholder (``?`` or ``%s``) and the boolean literals;
- how a time and a register are kept (SQLite: microseconds since the epoch and exact integers
  in units of the register's last digit; PostgreSQL: ``timestamptz`` and ``NUMERIC``, see
  :mod:`kamstrup382.storage.columns`); a KMP register's value (SQLite: its digits as text,
  PostgreSQL: ``NUMERIC``, see :mod:`kamstrup382.storage.rows`);
- a list of names passed as one parameter (``json_each`` or ``unnest``);
- whether the ``schema_version`` table exists, and the newest failure of each meter
  (``DISTINCT ON`` on PostgreSQL; a bare column beside ``max()`` on SQLite).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from kamstrup382.storage.columns import aware, from_micros, to_micros

__all__ = ["POSTGRES", "SQLITE", "Dialect"]


@dataclass(frozen=True, slots=True)
class Dialect:
    """The differences of one SQL backend, read by the shared queries."""

    #: The parameter placeholder.
    param: str
    true: str
    false: str
    #: A time as the database keeps it, and back.
    to_time: Callable[[datetime], Any]
    from_time: Callable[[Any], datetime]
    #: A numeric register (its value, its number of decimals) as the database keeps it, and back.
    to_register: Callable[[Decimal, int], Any]
    from_register: Callable[[Any, int], Decimal]
    #: A KMP register's exact value (any exponent) as the database keeps it, and back.
    to_exact: Callable[[Decimal], Any]
    from_exact: Callable[[Any], Decimal]
    #: A table of one column ``name`` (text), or ``id`` (integers), from one parameter: a
    #: list made by :attr:`list_param`.
    names: str
    ids: str
    list_param: Callable[[Sequence[str | int]], Any]
    #: One row when the ``schema_version`` table exists, none otherwise.
    schema_table_exists: str
    #: Per meter with failures: (meter, failed_at, kind, message) of its newest failure.
    last_failures: str


def _sqlite_register(value: Decimal, decimals: int) -> int:
    return int(value.scaleb(decimals)) if decimals else int(value)


def _same_time(at: Any) -> datetime:
    if not isinstance(at, datetime):
        raise TypeError(f"expected a datetime from the database, got {type(at).__name__}")
    return at


def _same_register(value: Any, decimals: int) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(value)


SQLITE = Dialect(
    param="?",
    true="1",
    false="0",
    to_time=to_micros,
    from_time=from_micros,
    to_register=_sqlite_register,
    from_register=lambda value, decimals: Decimal(value).scaleb(-decimals),
    # the value's digits as text: "230.1", "0.000" (exponent notation written out)
    to_exact=lambda value: format(value, "f"),
    from_exact=Decimal,
    names="(SELECT value AS name FROM json_each(?))",
    ids="(SELECT value AS id FROM json_each(?))",
    list_param=lambda values: json.dumps(list(values)),
    schema_table_exists=(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ),
    # SQLite: the bare columns of an aggregate query come from the row holding the max
    last_failures=(
        "SELECT meter, max(failed_at), kind, message FROM failures GROUP BY meter ORDER BY meter"
    ),
)

POSTGRES = Dialect(
    param="%s",
    true="true",
    false="false",
    to_time=aware,
    from_time=_same_time,
    to_register=lambda value, decimals: value,
    from_register=_same_register,
    to_exact=lambda value: value,
    from_exact=lambda value: _same_register(value, 0),
    names="(SELECT unnest(%s::text[]) AS name)",
    ids="(SELECT unnest(%s::bigint[]) AS id)",
    list_param=list,
    schema_table_exists="SELECT 1 WHERE to_regclass('schema_version') IS NOT NULL",
    last_failures=(
        "SELECT DISTINCT ON (meter) meter, failed_at, kind, message FROM failures "
        "ORDER BY meter, failed_at DESC, id DESC"
    ),
)
