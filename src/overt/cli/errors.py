"""How the CLI reports failures: one line saying what went wrong, exit status 1."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from overt.cli.client import ApiError
from overt.lab.topology import LabError
from overt.system.commands import CommandFailed, ToolMissing
from overt.system.waiting import NotReady

P = ParamSpec("P")
R = TypeVar("R")

stderr = Console(stderr=True, soft_wrap=True)

ALWAYS_EXPECTED: tuple[type[Exception], ...] = (
    LabError, CommandFailed, ToolMissing, NotReady, ApiError)
# Errors of modules a command may not load (libvirt's bindings, the settings): looked up
# when a command fails, so `overt vm list` does not import them to start.
EXPECTED_IF_LOADED = (("libvirt", "libvirtError"), ("overt.config", "SettingsError"))


def expected_errors() -> tuple[type[Exception], ...]:
    """The errors reported as a message: an error of a module never imported cannot have
    been raised."""
    loaded = tuple(getattr(sys.modules[module], name) for module, name in EXPECTED_IF_LOADED
                   if module in sys.modules)
    return ALWAYS_EXPECTED + loaded


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn Overt's expected errors into a clear message and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            if not isinstance(exc, expected_errors()):
                raise
            stderr.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper
