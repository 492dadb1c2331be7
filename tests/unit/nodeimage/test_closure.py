"""Which installed packages (and files) a node image takes: the Depends closure as dpkg
has it installed, alternatives and virtual packages resolved, documentation left out."""

from __future__ import annotations

from pathlib import Path

from overt.nodeimage.closure import closure, package_files, parse_status

STATUS = "\n".join([
    "qemu-system-x86\tinstall ok installed\tlibc6 (>= 2.34), qemu-system-common (= 1:7.2), "
    "seabios | ovmf\t\t",
    "qemu-system-common\tinstall ok installed\tlibc6, adduser\t\t",
    "libc6\tinstall ok installed\tlibgcc-s1\t\t",
    "libgcc-s1\tinstall ok installed\t\tlibc6 (>= 2.35)\t",
    "seabios\tdeinstall ok config-files\t\t\t",
    "ovmf\tinstall ok installed\t\t\t",
    "adduser\tinstall ok installed\tpasswd\t\t",
    "python3-minimal\tinstall ok installed\tpython3.11-minimal, python3:any\t\t",
    "python3.11-minimal\tinstall ok installed\tlibc6\t\tpython3-any, python3:any",
    "unused\tinstall ok installed\tlibc6\t\t",
])


def test_the_closure_follows_what_is_installed() -> None:
    packages = parse_status(STATUS)
    assert "seabios" not in packages  # removed, only its configuration left
    assert closure(packages, ["qemu-system-x86"]) == [
        "libc6", "libgcc-s1", "ovmf", "qemu-system-common", "qemu-system-x86"]
    assert closure(packages, ["python3-minimal"]) == [
        "libc6", "libgcc-s1", "python3-minimal", "python3.11-minimal"]
    assert "adduser" in closure(packages, ["qemu-system-x86"], excluded=frozenset())


def test_a_packages_files_without_its_documentation(tmp_path: Path) -> None:
    (tmp_path / "libvirt0:amd64.list").write_text(
        "/.\n/usr\n/usr/lib/x86_64-linux-gnu/libvirt.so.0\n/usr/share/doc/libvirt0/copyright\n"
        "/usr/share/man/man1/virsh.1.gz\n/usr/share/locale/de/LC_MESSAGES/libvirt.mo\n")
    assert package_files("libvirt0", tmp_path) == [
        "/usr", "/usr/lib/x86_64-linux-gnu/libvirt.so.0"]
    assert package_files("not-installed", tmp_path) == []
