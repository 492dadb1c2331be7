"""The `overt` command loads an area's module only when that area runs, and still lists
and runs every area as one command."""

from __future__ import annotations

import subprocess
import sys

import libvirt
import pytest
import typer
from typer.testing import CliRunner

from overt.cli.errors import reports_errors
from overt.cli.main import AREAS, COMMANDS, app
from overt.config import SettingsError


@pytest.mark.parametrize("name", [*COMMANDS, *AREAS])
def test_every_area_loads_and_shows_its_help(name: str) -> None:
    result = CliRunner().invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert f"overt {name}" in result.output


def test_the_command_list_names_every_area_once() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    for name in [*COMMANDS, "version", *AREAS]:
        assert sum(line.startswith(f"│ {name} ") for line in lines) == 1, (name, result.output)


def test_a_client_command_loads_neither_the_engine_nor_libvirt() -> None:
    probe = ("import sys\n"
             "from typer.testing import CliRunner\n"
             "from overt.cli.main import app\n"
             "result = CliRunner().invoke(app, ['vm', 'list', '--help'])\n"
             "assert result.exit_code == 0, result.output\n"
             "print(sorted(m for m in ('libvirt', 'overt.engine', 'overt.config', 'sqlalchemy',"
             " 'overt.bus.amqp.engine') if m in sys.modules))\n")
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert shown == "[]"


@pytest.mark.parametrize("error", [libvirt.libvirtError("no domain named x"),
                                   SettingsError("set OVERT_DB")])
def test_errors_of_modules_loaded_later_are_still_one_line(
        error: Exception, capsys: pytest.CaptureFixture[str]) -> None:
    @reports_errors
    def failing() -> None:
        raise error

    with pytest.raises(typer.Exit):
        failing()
    assert str(error) in capsys.readouterr().err


def test_an_unexpected_error_is_not_hidden() -> None:
    @reports_errors
    def failing() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        failing()
