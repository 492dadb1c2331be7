import io
import stat

from hypothesis import given
from hypothesis import strategies as st

from overt.lab.guest.cpio import Entry, read_archive, write_archive

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_./-", min_size=1, max_size=40)


def _roundtrip(entries: list[Entry]) -> list[Entry]:
    out = io.BytesIO()
    write_archive(out, entries)
    data = out.getvalue()
    assert len(data) % 4 == 0
    return read_archive(data)


@given(st.lists(st.tuples(names, st.binary(max_size=300)), max_size=12))
def test_files_survive_a_roundtrip(files: list[tuple[str, bytes]]) -> None:
    entries = [Entry.file(name.lstrip("/") or "x", data) for name, data in files]
    assert _roundtrip(entries) == entries


def test_directories_links_and_devices_keep_their_kind() -> None:
    entries = [
        Entry.directory("bin"),
        Entry.symlink("bin/sh", "busybox"),
        Entry.char_device("dev/console", 5, 1),
    ]
    back = _roundtrip(entries)
    assert stat.S_ISDIR(back[0].mode)
    assert stat.S_ISLNK(back[1].mode) and back[1].data == b"busybox"
    assert stat.S_ISCHR(back[2].mode) and back[2].device == (5, 1)
