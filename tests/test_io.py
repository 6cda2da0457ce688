"""Files firemlip writes: atomic (temporary file + rename) and with the mode the umask asks for."""

from __future__ import annotations

import os
import stat

import pytest
from ase.build import bulk

from firemlip.io import atomic_path, write_frames, write_json, write_text_atomic


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_honour_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_frames(tmp_path / "f.extxyz", [bulk("Cu")])
        write_text_atomic(tmp_path / "t.txt", "x")
        write_json(tmp_path / "j.json", {"a": 1})
        with atomic_path(tmp_path / "m.lammps.pt", suffix=".pt") as tmp:
            tmp.write_bytes(b"model")  # what torch.save / torch.jit.save do to the temporary path
        plain = tmp_path / "plain.txt"
        plain.write_text("y")  # what open() gives: the reference
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    assert stat.S_IMODE(plain.stat().st_mode) == want
    for name in ("f.extxyz", "t.txt", "j.json", "m.lammps.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
