"""Links and actions are advertised exactly when a route serves them."""

from __future__ import annotations

import re
import uuid

from overt.engine.api import served, views
from overt.engine.api.app import api_routes
from overt.engine.api.context import href


def test_a_declared_route_is_served_for_any_id() -> None:
    api_routes()
    vm = uuid.uuid4()
    assert served.serves("GET", href("vms", vm, "nics"))
    assert served.serves("POST", href("vms", vm, "start"))
    assert not served.serves("GET", href("vms", vm, "start"))
    assert not served.serves("POST", href("vms", vm, "nosuchaction"))
    assert not served.serves("GET", href("vms", "not-an-id", "nics"))


def test_views_drop_what_no_route_serves() -> None:
    api_routes()
    base = href("hosts", uuid.uuid4())
    assert [link["rel"] for link in views.links(base, "nics", "katelloerrata", "statistics")] == \
        ["nics", "statistics"]
    assert [link["rel"] for link in views.actions(base, "refresh", "enrollcertificate")["link"]] \
        == ["refresh"]


def test_every_route_the_api_declares_is_served() -> None:
    for entry in api_routes().entries:
        concrete = re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), entry.path)
        assert "{" not in concrete
        assert served.serves(entry.method, "/ovirt-engine/api" + concrete), entry


def test_links_under_any_spelling_of_an_id_agree_with_serves() -> None:
    api_routes()
    vm = uuid.uuid4()
    rels = ("nics", "start", "diskattachments", "nosuchlink")
    for base in (href("vms", vm), href("vms", vm.hex), href("vms", str(vm).upper()),
                 href("vms", "not-an-id"), href("vms", vm, "nics", uuid.uuid4())):
        expected = [rel for rel in rels if served.serves("GET", f"{base}/{rel}")]
        assert [link["rel"] for link in views.links(base, *rels)] == expected, base
    assert [link["rel"] for link in views.links(href("vms", vm), *rels)] == \
        ["nics", "diskattachments"]
    assert views.links(href("vms", "not-an-id"), *rels) == []
