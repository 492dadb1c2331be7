"""Fixtures shared by every test: real libvirt, the test guest, the lab, PostgreSQL,
RabbitMQ; and the fast lane (`pytest --fast`: only tests that need none of them)."""

from __future__ import annotations

import contextlib
import gc
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from overt.engine.identity import passwords
from overt.lab.guest import GuestImage, build_guest_image
from overt.lab.lab import Lab
from overt.lab.topology import LabSpec, Topology
from overt.system.daemons import LOCAL_LIBVIRT_URI, SYSTEM_RABBITMQ, ensure_libvirtd
from tests.support import inline_sqlite
from tests.support.broker import Broker, close_broker, open_broker
from tests.support.postgres import scratch_database

TEST_HASH_COST = 2**10  # scrypt's N of the fast lane's password hashes (as tests/support/schema)

# Tests use their own lab name and addresses so they never touch a user's lab; two
# suites running side by side on one machine set these variables to differ.
TEST_LAB = LabSpec(
    nodes=2,
    prefix=os.environ.get("OVERT_TEST_LAB_PREFIX", "ovtst"),
    address_block=os.environ.get("OVERT_TEST_LAB_BLOCK", "10.211.0.0/16"),
)


def _quiet_libvirt(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; tests read the exceptions."""


libvirt.registerErrorHandler(_quiet_libvirt, None)

# The fast lane: engine logic over the loopback transport and simulated nodes, units,
# SQLite. A test of it that hangs fails after FAST_TIMEOUT_S instead of holding the lane:
# long enough for its slowest tests (seconds each, an engine and a node in subprocesses)
# on a machine shared by others, running several times the work it has cores for.
FAST_LANE = "not (vm or lab or pg or amqp or browser or slow)"
FAST_TIMEOUT_S = 60
# Two workers per core: the lane's tests wait (ticks, polls, subprocesses) about as long as
# they compute, so one per core leaves the cores idle a third of the time (on 2 cores:
# 130 s with 2 workers, 96 s with 4, 91 s with 6, 105 s with 8; docs/development.md).
WORKERS_PER_CORE, FAST_WORKERS = 2, 8
# `scripts/test` runs the rest (`--rest`) as two pytest processes side by side, each one
# test at a time (`--stream`; one stream left a core idle half of the time: its tests
# mostly wait on guests, servers and polls). "machine": every test that touches something
# this machine has one of (its libvirtd and QEMU, the lab's namespaces and the network, the
# system RabbitMQ, the browser); "apart": the tests that touch none of them (engines in
# processes of their own over the direct transport, each on a PostgreSQL database of its
# own, simulated nodes, free ports), which nothing in the other stream can disturb nor be
# disturbed by. Two processes rather than pytest-xdist's `loadgroup`: with pytest 9 that
# mode no longer keeps a group in one worker, and tests of one group ran side by side
# (two session labs of one name, two demos' VMs of one name).
REST_STREAMS = ("machine", "apart")
SHARED_MARKERS = {"vm", "lab", "amqp", "browser"}
SHARED_PATHS = ("tests/e2e/demo/", "tests/e2e/lab/", "tests/e2e/managed/", "tests/e2e/web/",
                "tests/e2e/engine/test_netsvc_discovery.py", "tests/integration/engine/netsvc/",
                "tests/integration/node/", "tests/integration/lab/")
# A test using one of these fixtures needs what the marker names, whether or not its
# module says so: the marker is added here, so the fast lane never starts a real service.
FIXTURE_MARKERS = {
    "guest_image": "vm", "local_libvirt": "vm", "vm_dir": "vm", "lab": "lab",
    "fresh_postgres_url": "pg", "rabbitmq": "amqp", "playwright": "browser", "browser": "browser",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fast", action="store_true",
                     help=f"run only the fast lane ({FAST_LANE}): no QEMU, lab, PostgreSQL, "
                     "broker or browser")
    parser.addoption("--stream", choices=REST_STREAMS,
                     help="with --rest: only the tests of this stream (scripts/test runs "
                     "both side by side)")
    parser.addoption("--rest", action="store_true",
                     help="run only what the fast lane leaves out (QEMU, lab, PostgreSQL, "
                     "broker, browser, slow), one test at a time: `--fast` and `--rest` "
                     "together are the whole suite")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist looks at its options
def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--fast") and config.getoption("--rest"):
        raise pytest.UsageError("--fast and --rest are the suite's two halves: give one")
    lane = FAST_LANE if config.getoption("--fast") else \
        f"not ({FAST_LANE})" if config.getoption("--rest") else None
    if lane is not None:
        chosen = config.option.markexpr
        config.option.markexpr = f"({lane}) and ({chosen})" if chosen else lane
    if config.getoption("--fast"):
        _spread_over_cores(config)
        inline_sqlite.install()
        # The lane's in-process engines hash every password a test sets (users added,
        # changed, the sign-in's stand-in for an unknown user): at the engine's cost
        # that was 5 % of the lane's CPU. A hash names its own cost, so every check
        # runs unchanged; the rest of the suite keeps the engine's cost.
        passwords.HASH_COST = TEST_HASH_COST


def _spread_over_cores(config: pytest.Config) -> None:
    """The whole lane runs in two worker processes per core (up to FAST_WORKERS), a test file
    in one worker (its module fixtures shared as when run alone); `-n` says otherwise,
    and a run of chosen tests stays in this process."""
    if (not config.pluginmanager.hasplugin("xdist") or hasattr(config, "workerinput")
            or config.option.numprocesses is not None
            or config.getoption("collectonly")
            or config.args_source is not pytest.Config.ArgsSource.TESTPATHS):
        return
    workers = min(WORKERS_PER_CORE * len(os.sched_getaffinity(0)), FAST_WORKERS)
    if workers > 1:
        config.option.numprocesses, config.option.dist = workers, "loadfile"
        config.option.tx = ["popen"] * workers


def rest_stream(item: pytest.Item) -> str:
    """The stream of the rest a test runs in (see SHARED_MARKERS)."""
    if ({mark.name for mark in item.iter_markers()} & SHARED_MARKERS
            or item.nodeid.startswith(SHARED_PATHS)):
        return "machine"
    return "apart"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    fast = config.getoption("--fast")
    for item in items:
        needed = {FIXTURE_MARKERS[name] for name in getattr(item, "fixturenames", ())
                  if name in FIXTURE_MARKERS}
        for marker in sorted(needed - {mark.name for mark in item.iter_markers()}):
            item.add_marker(marker)
        if fast and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(FAST_TIMEOUT_S))
    stream = config.getoption("--stream")
    if stream is not None:
        if not config.getoption("--rest"):
            raise pytest.UsageError("--stream is a part of the rest: give --rest too")
        others = [item for item in items if rest_stream(item) != stream]
        if others:
            config.hook.pytest_deselected(items=others)
            items[:] = [item for item in items if rest_stream(item) == stream]


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def pytest_collection_finish(session: pytest.Session) -> None:
    """The fast lane's test processes hold every module and collected test for the whole
    run: they are moved out of the cyclic collector's sight (`gc.freeze`), which walked
    all of them at every full collection (twice more at the end of every worker), and its
    youngest generation is collected ten times less often (it ran thousands of times for
    the ORM's short-lived objects). 1,422 of the lane's tests in one process: 1.4-1.5 CPU
    seconds in the collector before, 0.6-0.7 after."""
    if session.config.getoption("--fast"):
        gc.freeze()
        gc.set_threshold(7000, 10, 10)


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """Test ids without the random UUIDs some parameters carry: the fast lane's worker
    processes must each name the same tests the same way."""
    if isinstance(val, uuid.UUID):
        return "uuid"
    if isinstance(val, str) and _UUID.search(val):
        return _UUID.sub("uuid", val)
    return None


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (namespaces, libvirtd); run the suite as root")


@pytest.fixture(scope="session")
def guest_image() -> GuestImage:
    """The test guest, built from Debian packages once and cached."""
    require_root()
    return build_guest_image()


@pytest.fixture(scope="session")
def local_libvirt() -> Iterator[libvirt.virConnect]:
    """A connection to this machine's libvirtd, started when it does not answer."""
    require_root()
    ensure_libvirtd()
    conn = libvirt.open(LOCAL_LIBVIRT_URI)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """A two-node lab with a storage host, removed at the end of the session."""
    require_root()
    ensure_libvirtd()  # its QEMU capability cache seeds the nodes'
    lab = Lab(Topology(TEST_LAB))
    lab.up()
    yield lab
    lab.down()


@pytest.fixture
def vm_dir() -> Iterator[Path]:
    """A scratch directory QEMU can read (it runs as libvirt-qemu; pytest's tmp is 0700)."""
    base = Path("/var/tmp/overt-tests")
    base.mkdir(mode=0o755, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=base))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A PostgreSQL database (and role) of its own, dropped on exit."""
    require_root()
    with scratch_database("overt_test") as url:
        yield url


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A PostgreSQL database of one test's own."""
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[Broker]:
    """This machine's RabbitMQ (started when it does not answer), with a vhost and an
    administrator of this test run, both removed at the end."""
    require_root()
    broker = open_broker(SYSTEM_RABBITMQ)
    yield broker
    close_broker(broker)
