"""Building the node image: the Debian cloud kernel, and an initramfs holding the files of
the installed packages a node needs (`closure`), the agent with the Python packages it
imports, and an init that starts libvirtd and the agent (files/init).

The agent finds its engine on the kernel command line (`overt.engine=`, put there by the
engine's provisioning profiles) or by DNS SRV, announces itself with its hardware facts
and, once an administrator approves it, enrolls and serves."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import shutil
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from overt.lab.guest import debian
from overt.lab.guest.cpio import Entry, write_archive
from overt.nodeimage.closure import ROOTS, closure, installed_packages, package_files
from overt.system.commands import run

AGENT_DIR = "opt/overt/site"  # the agent and its Python packages (PYTHONPATH)
# The modules a node loads at boot: its NICs and disks (virtio, e1000 for QEMU's PXE
# default), and what libvirt's guests need (tun, bridge).
NODE_MODULES = ("virtio_pci", "virtio_net", "virtio_blk", "e1000", "tun", "bridge",
                "br_netfilter", "vhost_net", "loop", "overlay", "button", "evdev")
# The agent's imports (and what the CLI loads to run it): their top-level packages are
# copied whole, so their lazy imports come along.
AGENT_IMPORTS = ("overt.cli.main", "overt.cli.node", "overt.node.composition",
                 "overt.node.agent", "overt.node.managed", "overt.bus.direct.agent",
                 "overt.node.hypervisor.libvirt_driver", "libvirt", "typer.rich_utils",
                 "rich.markdown")


@dataclass(frozen=True)
class NodeImageFiles:
    directory: Path

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"


# The node's Python (Debian's python3.11): its bytecode cache's name and format. Python
# under emulation compiling the agent's modules and the standard library at every boot
# costs tens of seconds, so the image carries the bytecode this machine already has.
NODE_PYTHON = (3, 11)
CACHE_TAG = "cpython-311"


def unchecked_pyc(source: bytes, source_stat: tuple[int, int], pyc: bytes) -> bytes | None:
    """`pyc` (this machine's bytecode of `source`, whose (mtime, size) is `source_stat`) as
    an unchecked hash-based pyc (PEP 552): valid whatever the file times in the image (all
    0 there), so the node's Python loads it without compiling. None when `pyc` is not
    this Python's or not of this source."""
    if len(pyc) < 16 or pyc[:4] != importlib.util.MAGIC_NUMBER:
        return None
    flags = int.from_bytes(pyc[4:8], "little")
    digest = importlib.util.source_hash(source)
    if flags == 0:  # timestamp-based: of this source only if its mtime and size match
        mtime, size = source_stat
        if (int.from_bytes(pyc[8:12], "little"), int.from_bytes(pyc[12:16], "little")) != (
                mtime & 0xFFFFFFFF, size & 0xFFFFFFFF):
            return None
    elif not flags & 1 or pyc[8:16] != digest:
        return None
    return pyc[:4] + (1).to_bytes(4, "little") + digest + pyc[16:]


def _node_file(name: str) -> bytes:
    return (resources.files("overt.nodeimage") / "files" / name).read_bytes()


def _canonical(path: str) -> str:
    """Where a packaged path lies on a merged-/usr system (/bin/x is /usr/bin/x)."""
    given = Path(path)
    return str(given.parent.resolve() / given.name).lstrip("/")


class _Tree:
    """The initramfs being assembled: directories first, then everything else."""

    def __init__(self) -> None:
        self.dirs: dict[str, int] = {}
        self.entries: dict[str, Entry] = {}

    def _parents(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.dirs.setdefault("/".join(parts[:i]), 0o755)

    def add(self, name: str, entry: Entry) -> None:
        self._parents(name)
        self.entries[name] = entry

    def add_path(self, source: Path, name: str) -> None:
        """A file or symlink of this machine, as it is."""
        try:
            info = source.lstat()
        except OSError:
            return
        if stat.S_ISLNK(info.st_mode):
            self.add(name, Entry.symlink(name, str(source.readlink())))
        elif stat.S_ISREG(info.st_mode):
            data = source.read_bytes()
            self.add(name, Entry.file(name, data, stat.S_IMODE(info.st_mode)))
            if name.endswith(".py"):
                self._add_bytecode(source, name, data, (int(info.st_mtime), info.st_size))
        elif stat.S_ISDIR(info.st_mode):
            self._parents(name + "/x")

    def _add_bytecode(self, source: Path, name: str, data: bytes,
                      source_stat: tuple[int, int]) -> None:
        if sys.version_info[:2] != NODE_PYTHON:
            return  # another Python's bytecode would not load on the node
        cached = source.parent / "__pycache__" / f"{source.stem}.{CACHE_TAG}.pyc"
        try:
            pyc = unchecked_pyc(data, source_stat, cached.read_bytes())
        except OSError:
            return
        if pyc is not None:
            folder, _, _file = name.rpartition("/")
            pyc_name = f"{folder}/__pycache__/" if folder else "__pycache__/"
            pyc_name += f"{source.stem}.{CACHE_TAG}.pyc"
            self.add(pyc_name, Entry.file(pyc_name, pyc))

    def add_tree(self, source: Path, name: str) -> None:
        for path in sorted(source.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            self.add_path(path, f"{name}/{path.relative_to(source)}")

    def archive(self) -> bytes:
        raw = io.BytesIO()
        entries = [Entry.directory(d, perms) for d, perms in sorted(self.dirs.items())
                   if d not in self.entries]
        write_archive(raw, entries + list(self.entries.values()))
        return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


def agent_sources(imports: Iterable[str] = AGENT_IMPORTS) -> list[Path]:
    """The top-level packages (and single modules) the agent imports, as installed for
    this Python: asked of a fresh interpreter, which imports them and tells its files."""
    code = ("import importlib, json, sys\n"
            f"for name in {list(imports)!r}:\n    importlib.import_module(name)\n"
            "bases = [p for p in sys.path if 'site-packages' in p or p.endswith('/src')]\n"
            "tops = set()\n"
            "for m in list(sys.modules.values()):\n"
            "    f = getattr(m, '__file__', None) or ''\n"
            "    for b in bases:\n"
            "        if f.startswith(b.rstrip('/') + '/'):\n"
            "            tops.add(b.rstrip('/') + '/' + f[len(b.rstrip('/')) + 1:].split('/')[0])\n"
            "print(json.dumps(sorted(tops)))")
    return [Path(p) for p in json.loads(run([sys.executable, "-c", code]).stdout)]


def _kernel_tree(cache: Path) -> Path:
    """The Debian cloud kernel package, unpacked once (it carries the kernel's modules)."""
    package = debian.kernel_package()
    tree = cache / package
    if not tree.is_dir():
        debian.download_and_unpack(package, cache / ".debs")
        (cache / ".debs" / package).rename(tree)
    return tree


def build_node_image(out: Path, *, cache: Path, roots: Iterable[str] = ROOTS) -> NodeImageFiles:
    """Write `vmlinuz` and `initrd.img` into `out` (an engine's node-images/NAME)."""
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    kernel = _kernel_tree(cache)
    shutil.copyfile(next((kernel / "boot").glob("vmlinuz-*")), out / "vmlinuz")
    tree = _Tree()
    for package in closure(installed_packages(), roots):
        for path in package_files(package):
            tree.add_path(Path(path), _canonical(path))
    for link in ("bin", "sbin", "lib", "lib64"):
        if Path("/" + link).is_symlink():
            tree.add(link, Entry.symlink(link, str(Path("/" + link).readlink())))
    modules = next((kernel / "lib" / "modules").iterdir())
    tree.add_tree(modules, f"usr/lib/modules/{modules.name}")
    sources = agent_sources()
    for source in sources:
        if source.is_dir():
            tree.add_tree(source, f"{AGENT_DIR}/{source.name}")
        else:
            tree.add_path(source, f"{AGENT_DIR}/{source.name}")
    # Their metadata too: some packages read their own version (importlib.metadata).
    for site in {s.parent for s in sources if s.parent.name == "site-packages"}:
        for info in site.glob("*.dist-info"):
            for name in ("METADATA", "top_level.txt", "entry_points.txt"):
                tree.add_path(info / name, f"{AGENT_DIR}/{info.name}/{name}")
    tree.add("init", Entry.file("init", _node_file("init"), 0o755))
    tree.add("etc/overt-node/modules", Entry.file(
        "etc/overt-node/modules", "\n".join(NODE_MODULES).encode() + b"\n"))
    tree.add("etc/overt-node/udhcpc.script", Entry.file(
        "etc/overt-node/udhcpc.script", _node_file("udhcpc.script"), 0o755))
    for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                        "libvirt-qemu:x:64055:64055::/var/lib/libvirt:/bin/false\n"),
                       ("etc/group", "root:x:0:\nkvm:x:104:\nlibvirt:x:105:\n"
                        "libvirt-qemu:x:64055:\n"),
                       ("etc/hostname", "overt-node\n")):
        tree.add(name, Entry.file(name, text.encode()))
    (out / "initrd.img").write_bytes(tree.archive())
    for artefact in (out / "vmlinuz", out / "initrd.img"):
        artefact.chmod(0o644)
    return NodeImageFiles(out)
