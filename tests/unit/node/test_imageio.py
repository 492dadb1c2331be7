"""The node's image transfers refuse what would reach beyond their own export."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from overt.node.errors import NodeFailure
from overt.node.imageio import NodeImageio
from overt.node.storage.local import LocalVolumes
from overt.protocol import ErrorCode
from overt.protocol.imageio import ImageExportStart, ImageExportStop, ImageTicket


def _node(tmp_path: Path) -> NodeImageio:
    volumes = LocalVolumes(tmp_path / "images", ())
    volumes.ensure_directory()
    return NodeImageio(tmp_path / "imageio", tmp_path / "node.key", volumes, port=0)


async def test_a_ticket_needs_its_transfers_export_on_this_node(tmp_path: Path) -> None:
    node = _node(tmp_path)
    with pytest.raises(NodeFailure) as refused:
        await node.execute(ImageTicket(action="add", transfer_id=uuid.uuid4(), ticket_id="t",
                                       ops=["read"], size=4096, timeout_s=60))
    assert refused.value.code == ErrorCode.INVALID_STATE
    assert not node.daemon.running  # nothing was started for it
    # Reading, extending or removing a ticket of a daemon that never ran finds nothing.
    state = await node.execute(ImageTicket(action="info", transfer_id=uuid.uuid4(),
                                           ticket_id="t"))
    assert state.info is None  # type: ignore[union-attr]
    assert await node.execute(ImageExportStop(transfer_id=uuid.uuid4())) is not None


@pytest.mark.parametrize("source", ["/etc/shadow", "../outside.img", "file:///etc/shadow",
                                    "json:{}"])
async def test_an_export_is_a_volume_of_this_node_or_an_nfs_url(tmp_path: Path,
                                                                 source: str) -> None:
    node = _node(tmp_path)
    node._ensure_daemon = _no_daemon  # type: ignore[method-assign]
    with pytest.raises(NodeFailure) as refused:
        await node.execute(ImageExportStart(transfer_id=uuid.uuid4(), source=source,
                                            format="raw", read_only=True, certificate_pem="",
                                            ca_pem=""))
    assert refused.value.code == ErrorCode.BAD_REQUEST


async def _no_daemon(_certificate: str, _ca: str) -> None:
    """The daemon is not what these cases check."""
