"""Reading libvirt's bulk stats: a record whose disks' counters were left out (the
domain's job held, `..._STATS_NOWAIT`) is told from one whose disks did no I/O."""

from __future__ import annotations

from overt.node.hypervisor.libvirt_host import block_stats_skipped, sum_indexed


def test_a_record_without_the_disks_counters_is_skipped_not_zero() -> None:
    read = {"block.count": 2, "block.0.name": "vda", "block.0.rd.bytes": 4096,
            "block.0.wr.bytes": 512, "block.1.name": "sdc"}  # an empty CD-ROM: no counters
    assert not block_stats_skipped(read)
    assert (sum_indexed(read, "block", "rd.bytes"), sum_indexed(read, "block", "wr.bytes")) \
        == (4096, 512)
    busy = {"block.count": 2, "block.0.name": "vda", "block.1.name": "sdc",
            "block.0.allocation": 0}
    assert block_stats_skipped(busy)
    idle = {"block.count": 1, "block.0.name": "vda", "block.0.rd.bytes": 0,
            "block.0.wr.bytes": 0}
    assert not block_stats_skipped(idle)
    assert not block_stats_skipped({"block.count": 0})  # no disks: nothing was skipped
