"""Paged lists of the portal (VMs, hosts): a page of 100 rows of a search in oVirt's search
language (the API's), sorted by a column on the server with a stable tie-breaker.

What is shown (search, sort, order, page) lives in the URL, so a list can be bookmarked,
reloaded and navigated with the browser's history. A search that cannot be understood is
shown next to the search box (a 400 page), never a server error.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from overt.engine.api import search
from overt.engine.api.search_fields import fields_for
from overt.engine.model.errors import InvalidInput

PAGE_SIZE = 100
MAX_SEARCH = 1000


@dataclass(frozen=True)
class Column:
    """A column of a list: `sort` is what the server orders by (None: not sortable)."""

    key: str
    label: str
    sort: Any = None


@dataclass
class ListView:
    """What a list page shows about the list itself: its search, order, page and size."""

    path: str
    columns: list[Column]
    search: str = ""
    sort: str = "name"
    descending: bool = False
    page: int = 1
    total: int = 0
    error: str | None = None
    explicit: dict[str, str] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / PAGE_SIZE))

    @property
    def first_row(self) -> int:
        return 0 if self.total == 0 else (self.page - 1) * PAGE_SIZE + 1

    @property
    def last_row(self) -> int:
        return min(self.total, self.page * PAGE_SIZE)

    def url(self, **changes: Any) -> str:
        """This list's URL with some of its parameters changed (defaults left out)."""
        params = {"search": self.search, "sort": self.sort,
                  "order": "desc" if self.descending else "asc", "page": str(self.page)}
        params.update({k: str(v) for k, v in changes.items()})
        shown = {k: v for k, v in params.items()
                 if v and (k, v) not in (("sort", "name"), ("order", "asc"), ("page", "1"))}
        return self.path + (f"?{urlencode(shown)}" if shown else "")

    def sort_url(self, key: str) -> str:
        """Sorting by `key`: ascending first, then the other way; back to the first page."""
        descending = not self.descending if key == self.sort else False
        return self.url(sort=key, order="desc" if descending else "asc", page=1)

    def aria_sort(self, key: str) -> str:
        if key != self.sort:
            return "none"
        return "descending" if self.descending else "ascending"


def list_view(request: Request, columns: list[Column]) -> ListView:
    """The list's parameters from the URL; a bad one is kept as the view's error."""
    params = request.query_params
    # The table alone (/fragments/vms) links to its page (/vms) like the page does.
    view = ListView(path=request.url.path.removeprefix("/fragments"), columns=columns,
                    search=params.get("search", "").strip()[:MAX_SEARCH])
    try:
        sort = params.get("sort")
        if sort is not None:
            if sort not in {c.key for c in columns if c.sort is not None}:
                raise InvalidInput(f"cannot sort by {sort!r}; sortable columns are " + ", ".join(
                    c.key for c in columns if c.sort is not None))
            view.sort = sort
            view.explicit["sort"] = sort
        order = params.get("order")
        if order is not None:
            if order not in ("asc", "desc"):
                raise InvalidInput(f"order must be asc or desc, not {order!r}")
            view.descending = order == "desc"
            view.explicit["order"] = order
        page = params.get("page")
        if page is not None:
            if not page.isdigit() or int(page) < 1:
                raise InvalidInput(f"page must be a page number from 1, not {page!r}")
            view.page = int(page)
            view.explicit["page"] = page
    except InvalidInput as exc:
        view.error = exc.detail
    return view


async def page_of(session: AsyncSession, stmt: Any, entity: Any,
                  view: ListView) -> list[Any]:
    """The rows of `stmt` (a select of `entity` and what it shows beside it) on the view's
    page; sets the view's total. An unreadable search leaves the view's error, no rows."""
    if view.error is not None:
        return []
    fields = fields_for(entity, {})
    try:
        parsed = search.parse(view.search) if view.search else search.Query()
        condition = search.where(view.search, fields, case_sensitive=False)
        order = _order(view, parsed, fields)
    except InvalidInput as exc:
        view.error = exc.detail
        return []
    count = select(func.count()).select_from(entity)
    if condition is not None:
        stmt = stmt.where(condition)
        count = count.where(condition)
    view.total = int((await session.execute(count)).scalar_one())
    if "page" not in view.explicit and parsed.page is not None:
        view.page = parsed.page
    view.page = min(view.page, view.pages)
    # The tie-breaker keeps rows of equal keys in one order from page to page.
    stmt = stmt.order_by(*order, entity.name.asc(), entity.id.asc())
    return list((await session.execute(
        stmt.offset((view.page - 1) * PAGE_SIZE).limit(PAGE_SIZE))).all())


def _order(view: ListView, parsed: search.Query, fields: dict[str, Any]) -> list[Any]:
    """The ORDER BY of the view's column, or of the search's own `sortby` when the URL has
    no column; empty values (no host) come last going up, first going down."""
    column: Any
    if "sort" not in view.explicit and parsed.sortby is not None:
        by_column = {c.key: c.sort for c in view.columns if c.sort is not None}
        column = by_column.get(parsed.sortby, fields.get(parsed.sortby))
        if column is None or isinstance(column, search.Related):
            raise InvalidInput(f"cannot sort by {parsed.sortby!r}")
        view.sort = parsed.sortby if parsed.sortby in by_column else view.sort
        if "order" not in view.explicit:
            view.descending = parsed.descending
    else:
        column = next(c.sort for c in view.columns if c.key == view.sort)
    if view.descending:
        return [column.desc().nulls_first()]
    return [column.asc().nulls_last()]


def ids_asked(request: Request, limit: int = PAGE_SIZE) -> list[uuid.UUID]:
    """`?ids=ID,ID`: the rows a page wants again (its own rows: a page's worth at most)."""
    asked = []
    for part in request.query_params.get("ids", "").split(",")[:limit]:
        try:
            asked.append(uuid.UUID(part))
        except ValueError:
            continue
    return asked
