"""The engine's layering, checked on its source: no import cycles between its packages
(services and jobs above all), queries and audit import no layer above them, and API
and portal handlers leave every database write to the service layer."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import overt.engine

ENGINE = Path(overt.engine.__file__).parent
# Writes of rows: what only the service layer (and the monitor, jobs, enrollment) does.
WRITES = {"add", "add_all", "delete", "merge"}
WRITE_STATEMENTS = {"insert", "update", "delete"}
# Sign-in state (sessions, console tokens) is the portal's own store, not inventory.
HANDLER_WRITERS_ALLOWED = {"web/sessions.py"}


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if parts[:2] == ["overt", "engine"] and len(parts) > 2 else None


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def _graph() -> dict[str, set[str]]:
    units = {p.stem if p.is_file() else p.name for p in ENGINE.iterdir()
             if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())}
    graph: dict[str, set[str]] = {}
    for path in ENGINE.rglob("*.py"):
        source = path.relative_to(ENGINE).parts[0].removesuffix(".py")
        targets = {_unit(m) for m in _imports(path)} & units - {source, "__init__"}
        graph.setdefault(source, set()).update(t for t in targets if t is not None)
    return graph


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), list(graph.get(start, ()))
    while todo:
        unit = todo.pop()
        if unit == goal:
            return True
        if unit not in seen:
            seen.add(unit)
            todo.extend(graph.get(unit, ()))
    return False


def test_services_jobs_and_the_monitor_import_each_other_in_no_cycle() -> None:
    graph = _graph()
    for a in ("services", "jobs", "monitor", "queries", "enrollment", "pki", "scheduler"):
        assert not _reaches(graph, a, a), f"{a} imports itself through {sorted(graph[a])}"
    assert not _reaches(graph, "jobs", "services")
    assert not _reaches(graph, "monitor", "services")


def test_shared_reads_and_the_audit_log_sit_below_every_layer() -> None:
    graph = _graph()
    assert graph["secrets"] == set()  # a leaf: the key file and AES-GCM only
    for leaf in ("queries", "audit"):
        # queries open a LUN's CHAP password as they build the node's view of it
        assert graph[leaf] <= {"db", "model", "secrets"}, (leaf, graph[leaf])


def _writes(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
            if node.func.attr in WRITES and isinstance(target, ast.Name | ast.Attribute) \
                    and ast.unparse(target).endswith("session"):
                found.append(f"{path.name}:{node.lineno} session.{node.func.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in WRITE_STATEMENTS and node.args:
            found.append(f"{path.name}:{node.lineno} {node.func.id}(...)")
    return found


def test_api_and_portal_handlers_leave_writes_to_the_service_layer() -> None:
    writes = [w for folder in ("api", "web") for path in sorted((ENGINE / folder).rglob("*.py"))
              if str(path.relative_to(ENGINE)) not in HANDLER_WRITERS_ALLOWED
              for w in _writes(path)]
    assert writes == []


def test_the_write_finder_finds_writes() -> None:
    """The check above would see a handler's write (it reads the service layer's)."""
    assert _writes(ENGINE / "services" / "tags.py")
    assert _writes(ENGINE / "web" / "sessions.py")
