"""The parent side of the teacher worker protocol (see :mod:`firemlip.teachers.worker` for the wire format).

:class:`TeacherWorker` starts a teacher's interpreter as a subprocess, keeps it alive and sends it batches of
structures; :class:`WorkerCalculator` wraps one as an ASE calculator (for teacher MD); :func:`label_with_worker`
is the batched path that :func:`firemlip.labelling.label_frames` takes for worker teachers. A worker that dies
is reported as a one-line :class:`FiremlipError` naming the teacher; frames finished before are in the label
cache, so rerunning resumes.

Units: positions and cell in Å; energy eV; forces eV/Å; stress eV/Å³ (Voigt-6, ASE sign).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from firemlip.errors import FiremlipError
from firemlip.teachers.registry import (
    WORKER_SCRIPT,
    TeacherSpec,
    install_hint,
    is_worker_name,
    resolve_teacher,
)

PROTOCOL = 1


def structure_message(atoms: Atoms) -> dict[str, Any]:
    """One structure as the protocol sends it (plain lists; JSON floats round-trip exactly)."""
    return {"numbers": [int(z) for z in atoms.numbers], "positions": np.asarray(atoms.positions, float).tolist(),
            "cell": np.asarray(atoms.cell.array, float).tolist(), "pbc": [bool(p) for p in atoms.pbc]}


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class TeacherWorker:
    """A live teacher process. Use as a context manager, or call :meth:`close`.

    ``startup_timeout``/``call_timeout`` are seconds (None waits for ever); the worker's stderr goes to
    ``log_path`` (default a temporary file) and its last line is quoted when the worker fails.
    """

    def __init__(self, spec: TeacherSpec, log_path: str | os.PathLike[str] | None = None,
                 startup_timeout: float | None = 1800.0, call_timeout: float | None = None) -> None:
        self.spec = spec
        self.startup_timeout = startup_timeout
        self.call_timeout = call_timeout
        self.log_path = Path(log_path) if log_path else Path(tempfile.gettempdir()) / \
            f"firemlip-teacher-{spec.name.replace('/', '_').replace(':', '_')[-60:]}-{os.getpid()}.log"
        self.proc: subprocess.Popen | None = None
        self.info: dict[str, Any] = {}
        self.n_done = 0
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._next_id = 0
        self._log = None

    # ------------------------------------------------------------------ life cycle
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> TeacherWorker:
        """Start the interpreter and wait for its ready line (the teacher's model is loaded by then)."""
        if self.alive:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in close()
        cmd = [self.spec.python, "-u", str(WORKER_SCRIPT), "--factory", self.spec.factory,
               "--settings", json.dumps(self.spec.settings), "--name", self.spec.name]
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                         env=env, text=True, encoding="utf-8", bufsize=1)
        except OSError as exc:
            raise FiremlipError(f"teacher {self.spec.name}: cannot start {self.spec.python} ({exc})") from None
        self._lines = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stdout, self._lines), daemon=True).start()
        msg = self._receive(self.startup_timeout, "while starting")
        if not msg.get("ready"):
            self._terminate()
            hint = f"; {install_hint(self.spec.name)}" if self.spec.builtin and "Module" in str(msg.get("error")) \
                else ""
            raise FiremlipError(f"teacher {self.spec.name}: the worker could not build the calculator "
                                f"({msg.get('error')}){hint}")
        if msg.get("protocol") != PROTOCOL:
            self._terminate()
            raise FiremlipError(f"teacher {self.spec.name}: worker speaks protocol {msg.get('protocol')}, "
                                f"expected {PROTOCOL}")
        self.info = msg
        return self

    @staticmethod
    def _read(stream, lines: queue.Queue) -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    def close(self) -> None:
        """Ask the worker to quit; kill it if it does not within 10 s."""
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                    self.proc.stdin.flush()
                    self.proc.stdin.close()
                    self.proc.wait(timeout=10)
                except (OSError, ValueError, subprocess.TimeoutExpired):
                    self._terminate()
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> TeacherWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # best effort: never leave a teacher running
        with contextlib.suppress(Exception):
            self._terminate()

    # ------------------------------------------------------------------ messages
    def _last_log_line(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 4000))
                lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
            return lines[-1][:200] if lines else ""
        except OSError:
            return ""

    def _died(self, during: str) -> FiremlipError:
        code = None
        if self.proc is not None:
            try:
                code = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._terminate()
                code = self.proc.returncode
        how = "was killed by " + _signal_name(code) if code is not None and code < 0 else f"exited with status {code}"
        last = self._last_log_line()
        pid = self.proc.pid if self.proc else "?"
        self.proc = None
        return FiremlipError(
            f"teacher {self.spec.name}: worker process {pid} {how} {during} after {self.n_done} structure(s); "
            f"labels finished before are cached, rerun the same command to resume (worker log {self.log_path}"
            + (f": {last}" if last else "") + ")")

    def _receive(self, timeout: float | None, during: str) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self._terminate()
            raise FiremlipError(f"teacher {self.spec.name}: worker did not answer within {timeout:.0f} s {during}; "
                                f"it was stopped (worker log {self.log_path})") from None
        if line is None:
            raise self._died(during)
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            self._terminate()
            raise FiremlipError(f"teacher {self.spec.name}: worker wrote a line that is not protocol JSON "
                                f"({line.strip()[:80]!r})") from None

    def compute(self, frames: Sequence[Atoms], stress: bool = True) -> list[dict[str, Any]]:
        """Energies (eV), forces (eV/Å, arrays) and stresses (eV/Å³ Voigt-6 or None) of ``frames`` in one batch.

        Each result is a dict with ``energy``, ``forces``, ``stress``, ``error`` (None or a one-line reason for
        a structure the teacher could not compute) and ``seconds``.
        """
        if not self.alive:
            if self.proc is not None:
                raise self._died("before a request")
            self.start()
        self._next_id += 1
        req = {"op": "calc", "id": self._next_id, "stress": bool(stress),
               "structures": [structure_message(a) for a in frames]}
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError, ValueError):
            raise self._died(f"while labelling a batch of {len(frames)}") from None
        msg = self._receive(self.call_timeout, f"while labelling a batch of {len(frames)}")
        if "fatal" in msg or msg.get("id") != self._next_id or len(msg.get("results", [])) != len(frames):
            self._terminate()
            raise FiremlipError(f"teacher {self.spec.name}: bad worker reply ({msg.get('fatal', 'mismatched id')})")
        out = []
        for r in msg["results"]:
            if r.get("error") is None:
                r["forces"] = np.asarray(r["forces"], dtype=float)
                if r.get("stress") is not None:
                    r["stress"] = np.asarray(r["stress"], dtype=float)
            out.append(r)
        self.n_done += len(frames)
        return out


# ---------------------------------------------------------------------- keeping workers alive across calls
_SHARED: dict[str, TeacherWorker] | None = None


@contextlib.contextmanager
def shared_workers() -> Iterator[None]:
    """Within this block, :func:`get_worker` reuses one live worker per teacher (closed at the end).

    Distillation labels in several rounds and runs teacher MD; the teacher's model is loaded once.
    """
    global _SHARED
    outer = _SHARED
    if outer is None:
        _SHARED = {}
    try:
        yield
    finally:
        if outer is None:
            for w in (_SHARED or {}).values():
                w.close()
            _SHARED = None


def _worker_key(spec: TeacherSpec) -> str:
    return json.dumps([spec.python, spec.factory, spec.settings], sort_keys=True, default=str)


@contextlib.contextmanager
def get_worker(name: str, settings: Mapping[str, Any] | None = None,
               log_dir: str | os.PathLike[str] | None = None) -> Iterator[TeacherWorker]:
    """A started worker for teacher ``name`` — shared inside :func:`shared_workers`, else closed on exit."""
    spec = resolve_teacher(name, settings)
    log = Path(log_dir) / f"teacher-{Path(spec.name).name.replace(':', '_')[-40:]}.log" if log_dir else None
    if _SHARED is not None:
        key = _worker_key(spec)
        w = _SHARED.get(key)
        if w is None or not w.alive:
            w = TeacherWorker(spec, log_path=log)
            _SHARED[key] = w
            w.start()
        yield w
        return
    w = TeacherWorker(spec, log_path=log)
    try:
        yield w.start()
    finally:
        w.close()


def label_with_worker(todo: Sequence[int], frames: Sequence[Atoms], name: str, settings: Mapping[str, Any],
                      record: Callable[[Any], None], batch_size: int = 8,
                      log_dir: str | os.PathLike[str] | None = None) -> None:
    """Label ``frames[i]`` for ``i`` in ``todo`` in batches through a worker; ``record`` gets one
    :class:`firemlip.labelling.LabelResult` per frame as soon as its batch returns (so it is cached)."""
    from firemlip.io import LabelResult

    if not todo:
        return
    with get_worker(name, settings, log_dir) as w:
        for start in range(0, len(todo), max(1, int(batch_size))):
            idx = list(todo[start:start + batch_size])
            results = w.compute([frames[i] for i in idx])
            for i, r in zip(idx, results, strict=True):
                if r.get("error") is not None:
                    record(LabelResult(i, error=r["error"], seconds=float(r.get("seconds", 0.0))))
                else:
                    record(LabelResult(i, float(r["energy"]), r["forces"], r.get("stress"), None,
                                       float(r.get("seconds", 0.0))))


class WorkerCalculator(Calculator):
    """An ASE calculator backed by a teacher worker (energy eV, forces eV/Å, stress eV/Å³).

    The worker starts on first use and stays alive until :meth:`close` (or, inside :func:`shared_workers`, until
    that block ends).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, name: str, settings: Mapping[str, Any] | None = None,
                 log_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.teacher = name
        self.teacher_settings = dict(settings or {})
        self.log_dir = log_dir
        resolve_teacher(name, settings)  # fail early (missing venv / interpreter)
        self._ctx: contextlib.AbstractContextManager | None = None
        self._worker: TeacherWorker | None = None

    def _get(self) -> TeacherWorker:
        if self._worker is None or not self._worker.alive:
            self._ctx = get_worker(self.teacher, self.teacher_settings, self.log_dir)
            self._worker = self._ctx.__enter__()
        return self._worker

    def calculate(self, atoms: Atoms | None = None, properties: Sequence[str] = ("energy",),
                  system_changes: Sequence[str] = all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        r = self._get().compute([self.atoms], stress=bool(np.all(self.atoms.pbc)))[0]
        if r.get("error") is not None:
            raise RuntimeError(f"teacher {self.teacher}: {r['error']}")
        self.results = {"energy": float(r["energy"]), "free_energy": float(r["energy"]), "forces": r["forces"]}
        if r.get("stress") is not None:
            self.results["stress"] = r["stress"]

    def close(self) -> None:
        """Release the worker (it keeps running when shared)."""
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
        self._ctx = None
        self._worker = None


def worker_calculator(name: str, settings: Mapping[str, Any] | None = None) -> WorkerCalculator:
    """An ASE calculator for a worker teacher (``sevenn``, ``chgnet``, ``worker:...``)."""
    if not is_worker_name(name):
        raise FiremlipError(f"teacher {name!r}: not a worker teacher")
    return WorkerCalculator(name, settings)
