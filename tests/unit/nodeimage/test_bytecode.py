"""The node image carries this machine's bytecode as unchecked hash-based pycs, so the
node's Python (under emulation) loads the agent and the standard library uncompiled."""

import importlib.util
import os
import py_compile
import sys
from pathlib import Path

import pytest

from overt.nodeimage.builder import unchecked_pyc

SOURCE = b"ANSWER = 42\n"


def _compiled(tmp_path: Path, mode: py_compile.PycInvalidationMode) -> tuple[Path, bytes]:
    source = tmp_path / "mod.py"
    source.write_bytes(SOURCE)
    cfile = tmp_path / "mod.pyc"
    py_compile.compile(str(source), cfile=str(cfile), invalidation_mode=mode, doraise=True)
    return source, cfile.read_bytes()


@pytest.mark.parametrize("mode", [py_compile.PycInvalidationMode.TIMESTAMP,
                                  py_compile.PycInvalidationMode.CHECKED_HASH])
def test_a_valid_pyc_becomes_unchecked_with_the_same_code(
        tmp_path: Path, mode: py_compile.PycInvalidationMode) -> None:
    source, pyc = _compiled(tmp_path, mode)
    st = source.stat()
    converted = unchecked_pyc(SOURCE, (int(st.st_mtime), st.st_size), pyc)
    assert converted is not None
    assert converted[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(converted[4:8], "little") == 1  # hash-based, source not checked
    assert converted[8:16] == importlib.util.source_hash(SOURCE)
    # In the image every file time is 0; Python loads the pyc without looking at the
    # source (here even a different one: only the pyc can say 42).
    image = tmp_path / "image"
    (image / "__pycache__").mkdir(parents=True)
    (image / "mod.py").write_bytes(b"ANSWER = 0\n")
    os.utime(image / "mod.py", (0, 0))
    (image / "__pycache__" / f"mod.{sys.implementation.cache_tag}.pyc").write_bytes(converted)
    spec = importlib.util.spec_from_file_location(f"mod_{mode.name.lower()}", image / "mod.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.ANSWER == 42


def test_a_stale_or_foreign_pyc_is_left_out(tmp_path: Path) -> None:
    source, pyc = _compiled(tmp_path, py_compile.PycInvalidationMode.TIMESTAMP)
    st = source.stat()
    assert unchecked_pyc(SOURCE, (int(st.st_mtime) + 1, st.st_size), pyc) is None  # edited
    assert unchecked_pyc(SOURCE, (int(st.st_mtime), st.st_size + 1), pyc) is None
    assert unchecked_pyc(SOURCE, (int(st.st_mtime), st.st_size), b"\x00\x00" + pyc[2:]) is None
    assert unchecked_pyc(SOURCE, (0, 0), pyc[:10]) is None
    _, hashed = _compiled(tmp_path, py_compile.PycInvalidationMode.CHECKED_HASH)
    assert unchecked_pyc(b"ANSWER = 43\n", (0, 0), hashed) is None  # of another source
