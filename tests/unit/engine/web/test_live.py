"""Which graphs a page asks the change feed about: ids only, a few at most, never an error."""

from __future__ import annotations

import uuid

from starlette.requests import Request

from overt.engine.web.live import MAX_GRAPHS_PER_PAGE, graphs_asked


def _request(query: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/events/stream",
                    "query_string": query.encode(), "headers": []})


def test_ids_are_kept_and_anything_else_is_ignored() -> None:
    vm, host = uuid.uuid4(), uuid.uuid4()
    asked = graphs_asked(_request(f"graphs={vm},{host.hex},not-an-id,,%27;drop"))
    assert asked == {str(vm), str(host)}


def test_no_graphs_and_too_many_graphs() -> None:
    assert graphs_asked(_request("")) == frozenset()
    many = [uuid.uuid4() for _ in range(MAX_GRAPHS_PER_PAGE + 5)]
    asked = graphs_asked(_request("graphs=" + ",".join(map(str, many))))
    assert asked == {str(i) for i in many[:MAX_GRAPHS_PER_PAGE]}
