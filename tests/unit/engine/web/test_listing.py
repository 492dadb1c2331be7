"""A paged list's parameters: read from the URL, written back into its links, and a bad
one kept as the list's error (shown next to the search box), never an exception."""

from __future__ import annotations

from starlette.requests import Request

from overt.engine.db.tables import Vm
from overt.engine.web.listing import Column, ListView, ids_asked, list_view

COLUMNS = [Column("name", "Name", Vm.name), Column("status", "Status", Vm.status),
           Column("cpus", "CPUs")]


def _request(query: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/vms",
                    "query_string": query.encode(), "headers": []})


def test_the_url_gives_search_sort_order_and_page() -> None:
    view = list_view(_request("search=status%3Dup&sort=status&order=desc&page=3"), COLUMNS)
    assert (view.search, view.sort, view.descending, view.page, view.error) == (
        "status=up", "status", True, 3, None)
    assert view.aria_sort("status") == "descending" and view.aria_sort("name") == "none"


def test_links_keep_the_rest_and_leave_out_defaults() -> None:
    view = ListView(path="/vms", columns=COLUMNS, search="name=a*", sort="status", page=2,
                    total=250)
    assert view.url(page=3) == "/vms?search=name%3Da%2A&sort=status&page=3"
    # The shown column again: the other way round, from the first page.
    assert view.sort_url("status") == "/vms?search=name%3Da%2A&sort=status&order=desc"
    assert view.sort_url("name") == "/vms?search=name%3Da%2A"
    assert (view.pages, view.first_row, view.last_row) == (3, 101, 200)
    assert ListView(path="/vms", columns=COLUMNS).url() == "/vms"


def test_bad_parameters_become_the_lists_error() -> None:
    assert "cannot sort by 'colour'" in str(list_view(_request("sort=colour"), COLUMNS).error)
    # A column shown but not sortable.
    assert "cannot sort by 'cpus'" in str(list_view(_request("sort=cpus"), COLUMNS).error)
    assert "order must be asc or desc" in str(list_view(_request("order=up"), COLUMNS).error)
    for page in ("0", "-1", "two"):
        assert "page must be a page number" in str(
            list_view(_request(f"page={page}"), COLUMNS).error)


def test_rows_asked_are_ids_only_and_a_page_at_most() -> None:
    asked = ids_asked(_request("ids=" + ",".join(
        ["6f1c2a52-6f7e-4d55-9f36-3d3b8e8f0c11", "x", "';drop"] + ["0" * 32] * 200)))
    assert len(asked) == 98  # of the first 100 parts, two are not ids
    assert str(asked[0]) == "6f1c2a52-6f7e-4d55-9f36-3d3b8e8f0c11"
