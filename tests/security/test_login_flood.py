"""A login flood (wrong passwords from many addresses and names) must not stall the engine:
the API keeps answering signed-in users quickly while it lasts, and every failure is
audited."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from overt.engine import audit
from overt.engine.db.tables import AuditEvent
from tests.support.engine import RunningEngine, start_engine

pytestmark = pytest.mark.slow  # a flood of sign-ins for seconds

FLOOD_S = 10.0
SAMPLES_GAP_S = 0.02


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[RunningEngine]:
    running = start_engine(tmp_path / "engine")
    yield running
    running.stop()


def _tls(engine: RunningEngine) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=engine.ca_file)


def _token(engine: RunningEngine) -> str:
    base = engine.url.removesuffix("/api")
    response = httpx.post(f"{base}/sso/oauth/token", verify=_tls(engine), data={
        "grant_type": "password", "username": "admin@internal", "password": engine.password,
        "scope": "ovirt-app-api"})
    response.raise_for_status()
    return str(response.json()["access_token"])


def _p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[int(0.99 * (len(ordered) - 1))]


def test_login_flood_leaves_the_api_answering_under_100_ms_p99(engine: RunningEngine) -> None:
    token = _token(engine)
    base = engine.url.removesuffix("/api")
    clusters = f"{engine.url}/clusters"
    with httpx.Client(verify=_tls(engine), timeout=30,
                      headers={"Authorization": f"Bearer {token}",
                               "Accept": "application/xml"}) as client:
        quiet: list[float] = []  # the same requests without a flood, for the record
        for _ in range(100):
            started = time.perf_counter()
            assert client.get(clusters).status_code == 200
            quiet.append(time.perf_counter() - started)
            time.sleep(SAMPLES_GAP_S)
        if _p99(quiet) >= 0.100:
            pytest.fail(f"this machine is too loaded to measure the criterion: the API's p99 is "
                        f"{1000 * _p99(quiet):.0f} ms without any flood")
        # The flood comes from other machines in real life: its own CPU is not the engine's.
        flood = subprocess.Popen(
            [sys.executable, "-m", "tests.support.login_flood", f"{base}/sso/oauth/token",
             str(FLOOD_S), "12", "12"], stdout=subprocess.PIPE, text=True,
            cwd=Path(__file__).parents[2], preexec_fn=lambda: os.nice(10))
        time.sleep(1.5)  # the flood is under way
        latencies: list[float] = []
        while flood.poll() is None:
            started = time.perf_counter()
            response = client.get(clusters)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200
            time.sleep(SAMPLES_GAP_S)
    out, _ = flood.communicate(timeout=30)
    counts = json.loads(out)
    assert "500" not in counts, counts
    p99 = _p99(latencies)
    assert p99 < 0.100, (f"API p99 {1000 * p99:.0f} ms during the flood (without it: "
                         f"{1000 * _p99(quiet):.0f} ms); flood: {counts}")
    assert len(latencies) > 100  # answered one after the other, all quickly
    failed = sum(n for code, n in counts.items() if code in ("400", "401", "429", "503"))
    assert failed > 30, f"the flood did not run: {counts}"
    # Every failed sign-in that reached a password check is in the audit log.
    refused_early = counts.get("429", 0) + counts.get("503", 0)
    db = engine.runtime.db

    async def audited() -> int:
        async with db.transaction() as session:
            return int((await session.execute(select(func.count()).where(
                AuditEvent.code == audit.USER_LOGIN_FAILED))).scalar_one())

    rows = asyncio.run_coroutine_threadsafe(audited(), engine.loop).result(timeout=30)
    assert rows >= counts.get("400", 0) + counts.get("401", 0) > 0, (rows, counts, refused_early)
