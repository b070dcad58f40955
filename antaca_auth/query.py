"""Plain SQL with named parameters (`:name`), compiled once to asyncpg's positional `$n`."""

from __future__ import annotations

import re
from typing import Any

_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


class Query:
    """A SQL text whose `:name` parameters are bound by keyword."""

    __slots__ = ("sql", "names")

    def __init__(self, text: str) -> None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        self.sql = _PARAM.sub(number, text)
        self.names = tuple(names)

    def args(self, **params: Any) -> tuple[Any, ...]:
        """Positional arguments for asyncpg, in the order the SQL numbers them."""
        missing = set(self.names) - params.keys()
        extra = params.keys() - set(self.names)
        if missing or extra:
            raise TypeError(f"query parameters: missing {sorted(missing)}, unexpected {sorted(extra)}")
        return tuple(params[name] for name in self.names)

    async def fetch(self, conn: Any, **params: Any) -> list[Any]:
        return await conn.fetch(self.sql, *self.args(**params))

    async def fetchrow(self, conn: Any, **params: Any) -> Any:
        return await conn.fetchrow(self.sql, *self.args(**params))

    async def fetchval(self, conn: Any, **params: Any) -> Any:
        return await conn.fetchval(self.sql, *self.args(**params))

    async def execute(self, conn: Any, **params: Any) -> str:
        return await conn.execute(self.sql, *self.args(**params))
