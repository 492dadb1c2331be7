"""A node's kdump status (vdsm's `kdumpStatus`), read from a /sys and /etc laid out as a
RHEL-like or a Debian machine's."""

from __future__ import annotations

from pathlib import Path

import pytest

from overt.node.kdump import fence_kdump_nodes, kdump_status
from overt.protocol.host import KdumpStatus

RHEL_KDUMP_CONF = """\
# This file contains a series of commands to perform (in order) in the kdump
#fence_kdump_nodes node1 node2
path /var/crash
core_collector makedumpfile -l --message-level 7 -d 31
fence_kdump_args -p 7410 -f auto -c 0 -i 10
fence_kdump_nodes engine.example.com 10.0.0.2   # the engine
"""
DEBIAN_KDUMP_TOOLS = "USE_KDUMP=1\nKDUMP_COREDIR=\"/var/crash\"\n"


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_loaded_crash_kernel_with_fence_kdump_nodes_is_enabled(tmp_path: Path) -> None:
    _write(tmp_path, "sys/kernel/kexec_crash_loaded", "1\n")
    _write(tmp_path, "etc/kdump.conf", RHEL_KDUMP_CONF)
    assert kdump_status(tmp_path) is KdumpStatus.ENABLED


def test_no_crash_kernel_loaded_is_disabled_whatever_the_configuration(tmp_path: Path) -> None:
    _write(tmp_path, "sys/kernel/kexec_crash_loaded", "0\n")
    _write(tmp_path, "etc/kdump.conf", RHEL_KDUMP_CONF)
    assert kdump_status(tmp_path) is KdumpStatus.DISABLED


@pytest.mark.parametrize("conf", [
    "path /var/crash\n",
    "#fence_kdump_nodes engine.example.com\n",  # commented out, as kexec-tools ships it
    "fence_kdump_nodes\n",  # no target
    "fence_kdump_args -p 7410\n",
])
def test_a_crash_kernel_without_fence_kdump_targets_is_disabled(tmp_path: Path,
                                                                conf: str) -> None:
    _write(tmp_path, "sys/kernel/kexec_crash_loaded", "1\n")
    _write(tmp_path, "etc/kdump.conf", conf)
    assert kdump_status(tmp_path) is KdumpStatus.DISABLED


def test_debian_kdump_tools_without_kdump_conf_sends_no_message(tmp_path: Path) -> None:
    _write(tmp_path, "sys/kernel/kexec_crash_loaded", "1\n")
    _write(tmp_path, "etc/default/kdump-tools", DEBIAN_KDUMP_TOOLS)
    assert kdump_status(tmp_path) is KdumpStatus.DISABLED


def test_debian_kdump_tools_with_fence_kdump_nodes_in_kdump_conf_is_enabled(
        tmp_path: Path) -> None:
    _write(tmp_path, "sys/kernel/kexec_crash_loaded", "1\n")
    _write(tmp_path, "etc/default/kdump-tools", DEBIAN_KDUMP_TOOLS)
    _write(tmp_path, "etc/kdump.conf", "fence_kdump_nodes 192.0.2.1\n")
    assert kdump_status(tmp_path) is KdumpStatus.ENABLED


def test_a_crash_kernel_and_no_kdump_configuration_at_all_is_unknown(tmp_path: Path) -> None:
    _write(tmp_path, "sys/kernel/kexec_crash_loaded", "1\n")
    assert kdump_status(tmp_path) is KdumpStatus.UNKNOWN


@pytest.mark.parametrize("loaded", [None, "", "yes\n"])
def test_an_unreadable_kexec_crash_loaded_is_unknown(tmp_path: Path,
                                                     loaded: str | None) -> None:
    if loaded is not None:
        _write(tmp_path, "sys/kernel/kexec_crash_loaded", loaded)
    _write(tmp_path, "etc/kdump.conf", RHEL_KDUMP_CONF)
    assert kdump_status(tmp_path) is KdumpStatus.UNKNOWN


def test_an_unreadable_kdump_conf_is_unknown(tmp_path: Path) -> None:
    _write(tmp_path, "sys/kernel/kexec_crash_loaded", "1\n")
    (tmp_path / "etc/kdump.conf").mkdir(parents=True)  # reading it fails
    assert kdump_status(tmp_path) is KdumpStatus.UNKNOWN


def test_fence_kdump_nodes_lists_every_target_line() -> None:
    assert fence_kdump_nodes(RHEL_KDUMP_CONF) == ("engine.example.com", "10.0.0.2")
    assert fence_kdump_nodes("fence_kdump_nodes a\nfence_kdump_nodes  b c\n") == ("a", "b", "c")
