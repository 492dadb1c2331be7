"""`overt node-image build`: the node image provisioning profiles boot (kernel and
initramfs with libvirt, QEMU, Python and the agent), from this machine's packages."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from overt.cli.output import console
from overt.engine.provisioning.images import IMAGE_NAME

app = typer.Typer(help="Node images for provisioning (PXE boot of new nodes).",
                  no_args_is_help=True)


@app.command()
def build(
    name: Annotated[str, typer.Argument(help="The image's name (profiles name it).")] = "node",
    images_dir: Annotated[Path, typer.Option(
        help="The engine's node images (its data directory's node-images).")]
    = Path("/var/lib/overt/engine/node-images"),
    cache: Annotated[Path, typer.Option(help="Where the Debian kernel is kept once fetched.")]
    = Path("/var/cache/overt/node-image"),
) -> None:
    """Build node image NAME from the installed Debian packages (libvirt-daemon,
    qemu-system-x86, python3) and this Overt; the engine serves it at once."""
    from overt.nodeimage.builder import build_node_image  # the build's imports, only here

    if not IMAGE_NAME.match(name):
        console.print(f"[bold red]error:[/] {name!r} is not an image name (letters, digits, "
                      "'.', '_', '-')", highlight=False)
        raise typer.Exit(2)
    started = time.monotonic()
    built = build_node_image(images_dir / name, cache=cache)
    size = built.initrd.stat().st_size >> 20
    console.print(f"[green]✓[/] node image {name} in {built.directory} (initramfs {size} MiB, "
                  f"{time.monotonic() - started:.0f} s)", highlight=False)
