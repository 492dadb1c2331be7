"""The CLI's output layer: tables for people, JSON for scripts, progress while waiting."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    grid = Table(title=title)
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(grid)


def as_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


@contextmanager
def progress(what: str) -> Iterator[Any]:
    """A spinner whose text follows the job's steps."""
    with console.status(what) as status:
        yield lambda step: status.update(f"{what}: {step}")


def human_bytes(value: int | None) -> str:
    if value is None:
        return ""
    size, unit = float(value), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):  # noqa: B007 - the last unit is kept
        if size < 1024:
            break
        size /= 1024
    return f"{size:.1f}".removesuffix(".0") + f" {unit}"


def parse_size(text: str) -> int:
    """'256M', '2G', '1048576' -> bytes."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    cleaned = text.strip().lower().removesuffix("ib").removesuffix("b")
    if cleaned and cleaned[-1] in units:
        return int(float(cleaned[:-1]) * units[cleaned[-1]])
    return int(cleaned)
