"""How the CLI reports failures: one line saying what went wrong, exit status 1."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import libvirt
import typer
from rich.console import Console

from overt.cli.client import ApiError
from overt.config import SettingsError
from overt.lab.topology import LabError
from overt.system.commands import CommandFailed, ToolMissing
from overt.system.waiting import NotReady

P = ParamSpec("P")
R = TypeVar("R")

stderr = Console(stderr=True, soft_wrap=True)

EXPECTED_ERRORS: tuple[type[Exception], ...] = (
    LabError, CommandFailed, ToolMissing, NotReady, libvirt.libvirtError, ApiError, SettingsError)


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn Overt's expected errors into a clear message and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except EXPECTED_ERRORS as exc:
            stderr.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper
