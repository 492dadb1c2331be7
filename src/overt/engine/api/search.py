"""oVirt's search language, the part its clients send: `name=web* and status=up sortby name
desc page 2`.

A query is `[Collection:] CONDITION [(and|or) CONDITION]... [sortby FIELD [asc|desc]] [page N]`,
after oVirt's SyntaxChecker. A condition is `field OP value` with OP one of `= != < > <= >=`;
`*` in a value is a wildcard; values may be quoted (`name="my vm"`). Conditions next to each
other without a word between are joined by `and`, and `and` binds tighter than `or`. Fields
are the collection's own (`name`, `status`) or another object's (`cluster=Default`,
`datacenter=dc1`, `vm.name=web`, `host.name=h1`): the condition holds when a related object
matches. `page N` shows the N-th page of `max` results (100 when `max` is not given).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, Uuid, and_, false, func, or_
from sqlalchemy.sql.elements import ColumnElement

from overt.engine.model.errors import InvalidInput

PAGE_SIZE = 100
_OPERATORS = ("!=", "<=", ">=", "=", "<", ">")
_TOKEN = re.compile(r"""\s*(?:"([^"]*)"|'([^']*)'|(!=|<=|>=|=|<|>)|([^\s=!<>"']+))""")


@dataclass(frozen=True)
class Related:
    """A field of other rows (`datacenter`, `vm.name`): matches when any row of `query`
    (a select correlated with the searched table) has `column` matching."""

    column: Any
    query: Select[Any]


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str


@dataclass
class Query:
    # Conditions joined by `or` of groups joined by `and`.
    groups: list[list[Condition]] = field(default_factory=list)
    sortby: str | None = None
    descending: bool = False
    page: int | None = None


@dataclass(frozen=True)
class _Token:
    text: str
    kind: str  # "word", "quoted" or "op"


def _tokens(text: str) -> list[_Token]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise InvalidInput(f"cannot understand the search at {text[pos:].strip()!r}")
        dq, sq, op, word = match.groups()
        if op is not None:
            tokens.append(_Token(op, "op"))
        elif word is not None:
            tokens.append(_Token(word, "word"))
        else:
            tokens.append(_Token(dq if dq is not None else sq, "quoted"))
        pos = match.end()
    return tokens


def _keyword(token: _Token | None, *words: str) -> bool:
    return token is not None and token.kind == "word" and token.text.lower() in words


def parse(query: str) -> Query:
    """The parts of a search query; InvalidInput says what is wrong with a bad one."""
    # "Vms: name=x" names the collection first, as oVirt's portal does; drop it.
    text = re.sub(r"^\s*[A-Za-z]+\s*:\s*", "", query)
    tokens = _tokens(text)
    result = Query()
    group: list[Condition] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if _keyword(token, "sortby"):
            if i + 1 >= len(tokens) or tokens[i + 1].kind != "word":
                raise InvalidInput("sortby needs a field name, e.g. 'sortby name desc'")
            result.sortby = tokens[i + 1].text.lower()
            i += 2
            if _keyword(tokens[i] if i < len(tokens) else None, "asc", "desc"):
                result.descending = tokens[i].text.lower() == "desc"
                i += 1
            continue
        if _keyword(token, "page"):
            number = tokens[i + 1].text if i + 1 < len(tokens) else ""
            if not number.isdigit() or int(number) < 1:
                raise InvalidInput(f"page needs a page number from 1, not {number!r}")
            result.page = int(number)
            i += 2
            continue
        if _keyword(token, "and"):
            if not group:
                raise InvalidInput("'and' needs a condition before it")
            i += 1
            continue
        if _keyword(token, "or"):
            if not group:
                raise InvalidInput("'or' needs a condition before it")
            result.groups.append(group)
            group = []
            i += 1
            continue
        condition, i = _condition(tokens, i)
        group.append(condition)
    if group:
        result.groups.append(group)
    elif result.groups:
        raise InvalidInput("'or' needs a condition after it")
    return result


def _condition(tokens: list[_Token], i: int) -> tuple[Condition, int]:
    name = tokens[i]
    if name.kind != "word" or i + 1 >= len(tokens) or tokens[i + 1].kind != "op":
        raise InvalidInput(f"cannot understand the search condition at {name.text!r}; "
                           "write it as field=value")
    op = tokens[i + 1].text
    value = tokens[i + 2] if i + 2 < len(tokens) else None
    if value is None or value.kind == "op":
        raise InvalidInput(f"the search condition on {name.text!r} needs a value after {op}")
    return Condition(name.text.lower(), op, value.text), i + 3


def apply(stmt: Select[Any], query: str | None, fields: dict[str, Any], *,
          case_sensitive: bool = True, limit: int | None = None) -> Select[Any]:
    """`stmt` filtered, sorted and paged by `query` over `fields` (search field -> column
    or Related), then limited to `limit` rows."""
    parsed = parse(query) if query else Query()
    condition = _where(parsed, fields, case_sensitive)
    if condition is not None:
        stmt = stmt.where(condition)
    if parsed.sortby is not None:
        column = fields.get(parsed.sortby)
        if column is None or isinstance(column, Related):
            raise InvalidInput(f"cannot sort by {parsed.sortby!r}; sortable fields are "
                               f"{_known(f for f, c in fields.items() if not isinstance(c, Related))}")
        stmt = stmt.order_by(None).order_by(column.desc() if parsed.descending else column.asc())
    if parsed.page is not None:
        size = limit if limit is not None else PAGE_SIZE
        stmt = stmt.offset((parsed.page - 1) * size)
        limit = size
    if limit is not None:
        stmt = stmt.limit(limit)
    return stmt


def where(query: str | None, fields: dict[str, Any], *, case_sensitive: bool = True
          ) -> ColumnElement[bool] | None:
    """The SQL condition of `query`'s conditions (its sortby and page are not applied)."""
    return _where(parse(query), fields, case_sensitive) if query else None


def _known(names: Any) -> str:
    return ", ".join(sorted(names))


def _where(query: Query, fields: dict[str, Any], case_sensitive: bool
           ) -> ColumnElement[bool] | None:
    ors = []
    for group in query.groups:
        ands = []
        for cond in group:
            target = fields.get(cond.field)
            if target is None:
                raise InvalidInput(f"cannot search by {cond.field!r}; searchable fields are "
                                   f"{_known(fields)}")
            ands.append(_related(target, cond, case_sensitive) if isinstance(target, Related)
                        else _clause(target, cond, case_sensitive))
        ors.append(and_(*ands) if len(ands) > 1 else ands[0])
    if not ors:
        return None
    return or_(*ors) if len(ors) > 1 else ors[0]


def _related(target: Related, cond: Condition, case_sensitive: bool) -> ColumnElement[bool]:
    # `cluster!=x` means "not in cluster x", not "in some cluster other than x".
    negate = cond.op == "!="
    positive = Condition(cond.field, "=", cond.value) if negate else cond
    matches = target.query.where(_clause(target.column, positive, case_sensitive)).exists()
    return ~matches if negate else matches


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
    if isinstance(getattr(column, "type", None), Uuid):
        return _uuid_clause(column, cond)
    left = column if case_sensitive else func.lower(column)
    right = value if case_sensitive else value.lower()
    if "*" in right:
        pattern = right.replace("%", r"\%").replace("_", r"\_").replace("*", "%")
        clause = left.like(pattern, escape="\\")
        return ~clause if cond.op == "!=" else clause
    return (left != right) if cond.op == "!=" else (left == right)


def _uuid_clause(column: Any, cond: Condition) -> ColumnElement[bool]:
    try:
        wanted = uuid.UUID(cond.value)
    except ValueError:
        if "*" in cond.value:
            raise InvalidInput(f"{cond.field} takes a whole id, without wildcards") from None
        # Like oVirt: an id that cannot exist matches nothing.
        return false() if cond.op == "=" else ~false()
    clause: ColumnElement[bool] = (column != wanted) if cond.op == "!=" else (column == wanted)
    return clause
