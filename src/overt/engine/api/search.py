"""oVirt's search language, the part clients use: `name=web* and status=up`.

Conditions are `field=value`, `field!=value` (and `<`, `>` on numbers), joined by
`and` (or `or`); `*` is a wildcard. Each collection says which fields it knows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_
from sqlalchemy.sql.elements import ColumnElement

from overt.engine.model.errors import InvalidInput

_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(!=|<=|>=|=|<|>)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str


def parse(query: str) -> tuple[list[Condition], str]:
    """The conditions of a query and how they join ('and' or 'or')."""
    text = query.strip()
    # "Vms: name=x" names the collection first, as the oVirt UI does; drop it.
    text = re.sub(r"^[A-Za-z]+\s*:\s*", "", text)
    if not text:
        return [], "and"
    parts = re.split(r"\s+(and|or)\s+", text, flags=re.IGNORECASE)
    joins = {p.lower() for p in parts[1::2]}
    if len(joins) > 1:
        raise InvalidInput("a search may join its conditions with 'and' or with 'or', not both")
    conditions = []
    for part in parts[0::2]:
        match = _CONDITION.match(part)
        if match is None:
            raise InvalidInput(f"cannot understand the search condition {part.strip()!r}; "
                               "write it as field=value")
        field, op, value = match.groups()
        conditions.append(Condition(field.lower(), op, value.strip().strip("\"'")))
    return conditions, (joins.pop() if joins else "and")


def where(query: str | None, fields: dict[str, Any], *, case_sensitive: bool = True
          ) -> ColumnElement[bool] | None:
    """A SQL condition for `query` over `fields` (search field name -> column)."""
    if not query:
        return None
    conditions, join = parse(query)
    clauses = []
    for cond in conditions:
        column = fields.get(cond.field)
        if column is None:
            known = ", ".join(sorted(fields))
            raise InvalidInput(f"cannot search by {cond.field!r}; searchable fields are {known}")
        clauses.append(_clause(column, cond, case_sensitive))
    if not clauses:
        return None
    return and_(*clauses) if join == "and" else or_(*clauses)


def _clause(column: Any, cond: Condition, case_sensitive: bool) -> ColumnElement[bool]:
    value = cond.value
    if cond.op in ("<", ">", "<=", ">="):
        try:
            number = float(value)
        except ValueError:
            raise InvalidInput(f"{cond.field} {cond.op} needs a number, not {value!r}") from None
        compared: ColumnElement[bool] = {"<": column < number, ">": column > number,
                                         "<=": column <= number, ">=": column >= number}[cond.op]
        return compared
    left = column if case_sensitive else func.lower(column)
    right = value if case_sensitive else value.lower()
    if "*" in right:
        pattern = right.replace("%", r"\%").replace("_", r"\_").replace("*", "%")
        clause = left.like(pattern, escape="\\")
        return ~clause if cond.op == "!=" else clause
    return (left != right) if cond.op == "!=" else (left == right)
