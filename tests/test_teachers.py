"""Teacher worker protocol: a second interpreter labels frames exactly as the in-process calculator does; a killed
worker is a one-line error naming the teacher and a rerun resumes from the cached labels; missing teacher
environments say how to create them. Real processes, real ASE calculators (EMT), no mocks."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from firemlip.cli import main
from firemlip.errors import FiremlipError
from firemlip.io import read_frames, write_frames
from firemlip.labelling import label_frames
from firemlip.teachers import TeacherWorker, is_worker_name, resolve_teacher
from firemlip.teachers.registry import teacher_venvs_dir, venv_python

EMT_WORKER = f"worker:{sys.executable}:ase.calculators.emt:EMT"

FACTORY = textwrap.dedent('''
    """A test teacher: EMT that counts its calculations and SIGKILLs its own process once, mid-run."""
    import os
    import signal

    from ase.calculators.emt import EMT


    def make(counter, kill_after=0, marker=None):
        calc = EMT()
        plain = calc.calculate
        done = [0]

        def calculate(atoms=None, properties=("energy",), system_changes=()):
            done[0] += 1
            with open(counter, "a") as fh:
                fh.write("x\\n")
            if kill_after and done[0] > kill_after and marker and not os.path.exists(marker):
                open(marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            return plain(atoms, properties, system_changes)

        calc.calculate = calculate
        return calc


    def broken():
        raise RuntimeError("no weights here")
''')


def _frames(n: int, seed: int = 0) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        a = bulk("Cu" if k % 2 else "Al", "fcc", a=3.7 if k % 2 else 4.05, cubic=True)
        if k % 3 == 0:
            a = a.repeat((2, 1, 1))
            a.numbers[0] = 13 if a.numbers[0] == 29 else 29
        a.positions += rng.normal(0, 0.08, a.positions.shape)
        a.info["config_type"] = f"t{k}"
        out.append(a)
    cluster = Atoms("Cu3Al", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0], [1.3, 1.3, 2.0]])
    out.append(cluster)  # not periodic: no stress
    return out


def _error_line(stderr: str) -> str:
    """The CLI's error: exactly one line starting with ``firemlip: error:`` (progress bars aside)."""
    lines = [ln for ln in stderr.splitlines() if "error" in ln]
    assert len(lines) == 1 and lines[0].startswith("firemlip: error: "), stderr
    return lines[0]


def _factory(tmp_path: Path) -> Path:
    p = tmp_path / "teacher_factory.py"
    p.write_text(FACTORY)
    return p


def test_worker_labels_identical_to_in_process(tmp_path):
    frames = _frames(5)
    ref, ref_failed = label_frames(frames, "emt", {}, tmp_path / "c_emt")
    got, failed = label_frames(frames, EMT_WORKER, {}, tmp_path / "c_worker")
    assert not ref_failed and not failed
    assert len(got) == len(frames)
    for a, b in zip(got, ref, strict=True):
        assert a.info["REF_energy"] == b.info["REF_energy"]  # bit-identical, not approximately equal
        assert np.array_equal(a.arrays["REF_forces"], b.arrays["REF_forces"])
        assert ("REF_stress" in a.info) == ("REF_stress" in b.info) == bool(all(a.pbc))
        if "REF_stress" in a.info:
            assert np.array_equal(a.info["REF_stress"], b.info["REF_stress"])
        assert a.info["labeller"] == EMT_WORKER
        assert a.info.get("config_type") == b.info.get("config_type")
    # the worker really is another interpreter, kept alive across a batch
    spec = resolve_teacher(EMT_WORKER)
    with TeacherWorker(spec, log_path=tmp_path / "w.log") as w:
        assert w.pid != os.getpid() and w.alive
        r = w.compute(frames[:3])
        r2 = w.compute(frames[:1])
        assert w.n_done == 4 and r2[0]["energy"] == r[0]["energy"]
    assert not w.alive


def test_worker_killed_mid_run_one_line_error_then_resume(tmp_path, capsys):
    fac = _factory(tmp_path)
    frames = _frames(11, seed=3)  # 12 frames: batches of 8 + 4
    inp = tmp_path / "in.extxyz"
    write_frames(inp, frames)
    name = f"worker:{sys.executable}:{fac}:make"
    counter = tmp_path / "calls.txt"
    cache = tmp_path / "cache"
    args = ["label", str(inp), "-c", name, "--set", f"counter={counter}", "--set", "kill_after=9",
            "--set", f"marker={tmp_path / 'killed'}", "-o", str(tmp_path / "out.extxyz"), "--cache", str(cache)]
    rc = main(args)
    err = _error_line(capsys.readouterr().err)
    assert rc == 2
    assert name in err and "SIGKILL" in err and "rerun" in err
    assert (tmp_path / "killed").exists() and not (tmp_path / "out.extxyz").exists()
    assert len(list(cache.glob("*.extxyz"))) == 8  # the first batch was cached before the kill
    calls_first = len(counter.read_text().splitlines())

    rc = main(args)  # same command: resumes from the cache, the worker is not killed again
    assert rc == 0, capsys.readouterr().err
    calls_second = len(counter.read_text().splitlines()) - calls_first
    assert 0 < calls_second < calls_first  # only the 4 missing frames were computed
    assert len(list(cache.glob("*.extxyz"))) == 12
    got = read_frames(tmp_path / "out.extxyz")
    ref, _ = label_frames(frames, "emt", {}, tmp_path / "c_emt")
    assert len(got) == len(ref) == 12
    for a, b in zip(got, ref, strict=True):
        assert a.info["REF_energy"] == pytest.approx(b.info["REF_energy"], abs=1e-6)
        assert np.allclose(a.arrays["REF_forces"], b.arrays["REF_forces"], atol=1e-6)


def test_worker_killed_from_outside_is_one_line_error(tmp_path):
    spec = resolve_teacher(EMT_WORKER)
    w = TeacherWorker(spec, log_path=tmp_path / "w.log").start()
    os.kill(w.pid, signal.SIGKILL)
    with pytest.raises(FiremlipError) as exc:
        w.compute(_frames(2))
    msg = str(exc.value)
    assert "\n" not in msg and EMT_WORKER in msg and "SIGKILL" in msg
    w.close()


def test_worker_factory_failure_and_bad_names(tmp_path):
    fac = _factory(tmp_path)
    with pytest.raises(FiremlipError, match="could not build the calculator .*no weights here"):
        label_frames(_frames(1), f"worker:{sys.executable}:{fac}:broken", {}, tmp_path / "c")
    with pytest.raises(FiremlipError, match="interpreter /no/such/python not found"):
        label_frames(_frames(1), "worker:/no/such/python:ase.calculators.emt:EMT", {}, tmp_path / "c")
    with pytest.raises(FiremlipError, match="expected worker:/path/to/python:module:function"):
        resolve_teacher("worker:onlyonepart")
    assert is_worker_name("sevenn") and is_worker_name("chgnet") and is_worker_name(EMT_WORKER)
    assert not is_worker_name("emt")


@pytest.mark.parametrize("teacher", ["chgnet", "sevenn"])
def test_missing_teacher_environment_says_make_teachers(tmp_path, monkeypatch, capsys, teacher):
    monkeypatch.setenv("FIREMLIP_TEACHER_VENVS", str(tmp_path / "no-venvs"))
    rc = main(["foundation", "distill", "--teacher", teacher, "--elements", "Li,P,S,Cl", "--size", "tiny",
               "-o", str(tmp_path / "out")])
    err = _error_line(capsys.readouterr().err)
    assert rc == 2
    assert f"teacher {teacher}" in err and "make teachers" in err
    assert not (tmp_path / "out" / "foundation.model").exists()
    inp = tmp_path / "in.extxyz"
    write_frames(inp, _frames(1))
    rc = main(["label", str(inp), "-c", teacher, "-o", str(tmp_path / "l.extxyz")])
    err = _error_line(capsys.readouterr().err)
    assert rc == 2 and "make teachers" in err


@pytest.mark.parametrize("teacher", ["chgnet", "sevenn"])
def test_builtin_teacher_when_installed(tmp_path, teacher):
    """Runs only where `make teachers` was run: the real teacher labels two frames through its own venv."""
    if not venv_python(teacher_venvs_dir() / teacher).exists():
        pytest.skip(f"{teacher} venv not created (make teachers)")
    frames = [bulk("Li", "bcc", a=3.44).repeat(2), bulk("NaCl", "rocksalt", a=5.6)]
    frames[0].positions += np.random.default_rng(0).normal(0, 0.05, frames[0].positions.shape)
    got, failed = label_frames(frames, teacher, {"device": "cpu"}, tmp_path / "c")
    assert not failed and len(got) == 2
    li = got[0]
    assert -2.5 < li.info["REF_energy"] / len(li) < -1.5  # Li bcc ≈ -1.9 eV/atom in PBE
    assert np.abs(li.arrays["REF_forces"].sum(axis=0)).max() < 1e-3  # momentum conservation
    assert li.info["REF_stress"].shape == (6,)
