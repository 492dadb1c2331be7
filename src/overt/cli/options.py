"""Options every API command takes: where the engine is and who you are."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from overt.cli.client import ApiClient, ApiTarget

Url = Annotated[str | None, typer.Option(envvar="OVERT_URL", help="The engine's API URL.")]
User = Annotated[str | None, typer.Option(envvar="OVERT_USER", help="User name (admin@internal).")]
PasswordFile = Annotated[Path | None, typer.Option(help="File holding the password "
                                                   "(or set OVERT_PASSWORD).")]
CaFile = Annotated[Path | None, typer.Option(help="The engine's CA certificate.")]
DataDir = Annotated[Path | None, typer.Option(help="A local engine's data directory, to find "
                                              "its password and CA.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def connect(url: str | None, user: str | None, password_file: Path | None,
            ca_file: Path | None, data_dir: Path | None) -> ApiClient:
    return ApiClient(ApiTarget.from_environment(url, user, password_file, ca_file, data_dir))
