"""Fuzzing the API: every route the router declares (and the SSO and PKI endpoints), with
generated XML and JSON bodies, headers and query strings. No answer is a 5xx, the engine
keeps running, and a refused request (4xx) changes nothing in the database."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import ssl
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from overt.engine.api import sso
from overt.engine.api.app import api_routes
from overt.engine.api.context import API_PREFIX
from overt.engine.composition import Parts
from overt.engine.db.tables import Base, Cluster, Template
from tests.support.engine import RunningEngine, start_engine

pytestmark = pytest.mark.slow  # hundreds of generated requests

# What a refused request must leave as it was (audit events, tokens and sessions are the
# record of the request itself).
STATE_TABLES = sorted(t.name for t in Base.metadata.sorted_tables
                      if t.name not in ("audit_events", "tokens", "web_sessions",
                                        "console_tokens", "stats_samples", "node_event_inbox"))

ROUTES = sorted({(entry.method, API_PREFIX + entry.path) for entry in api_routes().entries}
                | {(method, route.path) for route in sso.ROUTES
                   for method in (route.methods or ()) if method != "HEAD"}
                | {("GET", "/ovirt-engine/services/pki-resource")})

VOCABULARY = ["vm", "name", "description", "cluster", "template", "memory", "cpu", "topology",
              "sockets", "cores", "os", "type", "boot", "devices", "device", "disk",
              "disk_attachment", "disk_attachments", "interface", "bootable", "active",
              "provisioned_size", "format", "sparse", "storage_domain", "storage_domains",
              "host", "address", "port", "action", "ticket", "value", "expiry", "nic",
              "network", "vnic_profile", "mac", "id", "href", "placement_policy", "hosts",
              "high_availability", "enabled", "async", "force", "data_center", "x"]
texts = st.one_of(st.text(max_size=30), st.sampled_from(
    ["", "0", "-1", "1" * 30, "true", "Default", "Blank", "virtio", "cow", str(uuid.uuid4()),
     "00000000-0000-0000-0000-000000000000", "<", "&amp;", "x" * 300]))
tags = st.sampled_from(VOCABULARY)


def _xml(node: Any) -> str:
    tag, content = node
    if isinstance(content, list):
        return f"<{tag}>{''.join(_xml(child) for child in content)}</{tag}>"
    escaped = content.replace("&", "&amp;").replace("<", "&lt;")
    return f"<{tag}>{escaped}</{tag}>"


def _json(content: Any) -> Any:
    if isinstance(content, list):
        return {tag: _json(child) for tag, child in content}
    return content


elements = st.recursive(st.tuples(tags, texts),
                        lambda inner: st.tuples(tags, st.lists(inner, max_size=5)),
                        max_leaves=15)
bodies = st.one_of(
    st.just(("", None)),
    elements.map(lambda e: (_xml(e), "application/xml")),
    elements.map(lambda e: (json.dumps(_json(e[1])), "application/json")),
    st.integers(100, 20_000).map(lambda d: ('{"vm":' * d + "1" + "}" * d, "application/json")),
    st.integers(100, 20_000).map(lambda d: ("<vm>" * d + "</vm>" * d, "application/xml")),
    st.tuples(st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
              st.sampled_from(["application/xml", "application/json", "text/plain",
                               "application/x-www-form-urlencoded"])),
)
header_names = st.sampled_from(["Accept", "Version", "Prefer", "Filter", "All-Content",
                                "Correlation-Id", "X-Custom", "Content-Language",
                                "Authorization", "Expect"])
queries = st.dictionaries(st.sampled_from(["search", "max", "follow", "all_content", "async",
                                           "resource", "format", "case_sensitive", "from", "x"]),
                          texts, max_size=3)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    # The API alone: with no worker, the database changes only through the requests.
    running = start_engine(tmp_path_factory.mktemp("fuzz") / "engine",
                           parts=Parts(worker=False, monitor=False))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def known_ids(engine: RunningEngine) -> list[str]:
    async def ids() -> list[str]:
        async with engine.runtime.db.transaction() as session:
            clusters = (await session.execute(select(Cluster.id))).scalars().all()
            templates = (await session.execute(select(Template.id))).scalars().all()
            return [str(i) for i in [*clusters, *templates]]
    return asyncio.run_coroutine_threadsafe(ids(), engine.loop).result(timeout=30)


@pytest.fixture(scope="module")
def client(engine: RunningEngine) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=engine.url.removesuffix("/ovirt-engine/api"), timeout=60,
                      verify=ssl.create_default_context(cafile=engine.ca_file)) as api:
        yield api


def _state(engine: RunningEngine) -> str:
    async def digest() -> str:
        hasher = hashlib.sha256()
        async with engine.runtime.db.transaction() as session:
            for table in STATE_TABLES:
                rows = (await session.execute(text(f"SELECT * FROM {table}"))).all()  # noqa: S608
                hasher.update(repr(sorted(map(repr, rows))).encode())
        return hasher.hexdigest()
    return asyncio.run_coroutine_threadsafe(digest(), engine.loop).result(timeout=30)


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(route=st.sampled_from(ROUTES), data=st.data())
def test_fuzz_every_api_route(engine: RunningEngine, client: httpx.Client, known_ids: list[str],
                              route: tuple[str, str], data: st.DataObject) -> None:
    method, template = route
    path = re.sub(r"\{[^}]+\}", lambda _m: data.draw(st.one_of(
        st.sampled_from(known_ids), st.uuids().map(str),
        st.text(alphabet="abc-_.%0123456789", min_size=1, max_size=12))), template)
    body, content_type = data.draw(bodies)
    headers = {"Authorization": f"Basic {_basic(engine)}"}
    headers.update(data.draw(st.dictionaries(header_names, texts.filter(_header_safe),
                                             max_size=3)))
    if content_type:
        headers["Content-Type"] = content_type
    before = _state(engine)
    answer = client.request(method, path, params=data.draw(queries), headers=headers,
                            content=body.encode("utf-8", "surrogatepass") if body else None)
    assert answer.status_code < 500, (method, path, answer.status_code, answer.text[:500])
    if answer.status_code >= 400:
        assert _state(engine) == before, (method, path, answer.status_code, answer.text[:300])
    assert engine.thread.is_alive()


def _basic(engine: RunningEngine) -> str:
    return base64.b64encode(f"admin@internal:{engine.password}".encode()).decode()


def _header_safe(value: str) -> bool:
    # Printable, without leading or trailing blanks: HTTP strips those (optional white
    # space), and the client refuses to send a value that has them.
    return all(32 <= ord(c) < 127 for c in value) and value == value.strip()


def test_the_engine_survived_the_fuzzing(engine: RunningEngine, client: httpx.Client) -> None:
    answer = client.get("/ovirt-engine/api/clusters", auth=("admin@internal", engine.password))
    assert answer.status_code == 200 and engine.thread.is_alive()
    assert len(ROUTES) > 40  # the router's list, not a hand-picked one
