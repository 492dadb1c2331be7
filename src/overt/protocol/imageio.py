"""Image transfer on a node: a volume exported over NBD and tickets in the node's
ovirt-imageio daemon, which clients reach at `https://NODE:PORT/images/TICKET`.

The engine keeps each transfer's lifecycle; the node serves the data. A ticket names a
transfer, never a path: the node points it at that transfer's own export, so no ticket
the engine sends can reach any other volume.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import Field

from overt.protocol.storage import IscsiExtentTarget
from overt.protocol.vm import WireModel


class ImageExport(WireModel):
    """Where the node's imageio daemon listens (its address is the host's), and for a
    volume's own bytes (`own_bytes`) how many there are."""

    port: int
    size: int | None = None


class ImageTicketState(WireModel):
    """The daemon's view of a ticket (`idle_time`, `transferred`, `active`); None: gone."""

    info: dict[str, Any] | None = None


class ImageExportStart(WireModel):
    """Export a volume for one transfer and have the imageio daemon running.

    `source` is a volume file under the node's storage directory, or QEMU's URL of an
    NFS volume; with `extent`, an iSCSI volume: that extent of its LUN (`source` is then
    the LUN's URL, for the record). `certificate_pem` is the server CA's certificate for this node's own key
    and address (server authentication only), so clients trusting the engine CA accept
    the daemon; `ca_pem` is that CA (the daemon checks nothing with it but keeps it).
    `own_bytes`: serve a qcow2 volume's own bytes (oVirt's `format=cow` download), of an
    iSCSI extent only up to the qcow2's end, never the rest of the extent."""

    name: Literal["image.export_start"] = "image.export_start"
    result: ClassVar[type[ImageExport]] = ImageExport
    mutates: ClassVar[bool] = False  # starting twice answers with the running export
    transfer_id: UUID
    source: str = Field(min_length=1, max_length=4096)
    format: Literal["raw", "qcow2"]
    read_only: bool
    extent: IscsiExtentTarget | None = None
    own_bytes: bool = False
    certificate_pem: str = Field(max_length=16384)
    ca_pem: str = Field(max_length=16384)


class ImageExportStop(WireModel):
    """Take the transfer's tickets away, flush and close its export (repeatable)."""

    name: Literal["image.export_stop"] = "image.export_stop"
    result: ClassVar[type[ImageTicketState]] = ImageTicketState
    mutates: ClassVar[bool] = False
    transfer_id: UUID


class ImageTicket(WireModel):
    """Add (for the transfer's export), extend, remove or read a ticket."""

    name: Literal["image.ticket"] = "image.ticket"
    result: ClassVar[type[ImageTicketState]] = ImageTicketState
    mutates: ClassVar[bool] = False
    action: Literal["add", "extend", "remove", "info"]
    transfer_id: UUID
    ticket_id: str = Field(min_length=1, max_length=64)
    ops: list[Literal["read", "write"]] = Field(default_factory=list)
    size: int = Field(0, ge=0)
    timeout_s: int = Field(0, ge=0)
    inactivity_timeout_s: int = Field(0, ge=0)
