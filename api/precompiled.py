"""Statements compiled once and run on the driver's own cursor, with SQLAlchemy's type conversions.

The hot statements (a payment's history here; a batch's writes in ingest/sinks.py) are fixed Core statements.
Measured, running them through `Connection.execute` cost several times the query itself: the cache
key, the execution context, the result object. Compiling once keeps the SQL SQLAlchemy's, and the
per-column bind and result processors keep the conversions SQLAlchemy's (a time stored from here reads
back the same through the ORM); only the per-execution layers are skipped. The batch writers send
their values as one JSON parameter instead, already in the form each database stores (ingest/sinks.py).
"""

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Dialect, Select

from database import compile_for

Binds = list[tuple[str, Callable[[Any], Any] | None]]  # parameter name, SQLAlchemy's conversion for it


def parameters(values: Mapping[str, Any], binds: Binds) -> dict[str, Any]:
    return {name: convert(values.get(name)) if convert else values.get(name) for name, convert in binds}


class PrecompiledSelect:
    """A SELECT compiled for one dialect, run on a DBAPI cursor; rows come back as tuples of the values
    the ORM would give (datetimes with their time zone, and so on)."""

    def __init__(self, stmt: Select[*tuple[Any, ...]], dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=compile_for(dialect))
        self.sql = str(compiled)
        self._compiled = compiled
        self._positions: list[str] | None = compiled.positiontup  # the parameters' order, when positional
        self._binds: Binds = [
            (name, bind.type.dialect_impl(dialect).bind_processor(dialect))
            for name, bind in compiled.binds.items()
        ]
        processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in stmt.selected_columns
        ]
        self._converting = [
            (index, convert) for index, convert in enumerate(processors) if convert is not None
        ]

    def bound(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters sent with `sql` for `values`: every bind parameter the statement has, except
        those with a default, converted for the driver."""
        # construct_params fills in the defaults SQLAlchemy added itself (SQLite's OFFSET 0) and refuses
        # a missing value, as execute() would.
        return parameters(self._compiled.construct_params(values), self._binds)

    def execute(self, cursor: Any, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        cursor.execute(self.sql, self.bound(values))
        return self.converted(cursor.fetchall())

    async def fetch(self, connection: Any, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The same on an asyncpg connection, for a statement compiled for asyncpg's dialect: its
        parameters go by position ($1, $2, ...)."""
        rows = await connection.fetch(self.sql, *self.positional(values))
        return self.converted([tuple(row) for row in rows])

    def positional(self, values: Mapping[str, Any]) -> list[Any]:
        """`bound(values)` in the order of the statement's positional parameters ($1, $2, ...)."""
        assert self._positions is not None, "compiled for a dialect with named parameters"
        bound = self.bound(values)
        return [bound[name] for name in self._positions]

    def converted(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        if not self._converting:
            return rows
        converted = []
        for row in rows:
            values_out = list(row)
            for index, convert in self._converting:
                values_out[index] = convert(values_out[index])
            converted.append(tuple(values_out))
        return converted
