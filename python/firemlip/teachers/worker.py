"""Teacher worker: a stand-alone script run by *another* Python interpreter (a teacher's own venv).

It imports nothing from firemlip (the teacher's venv need not have firemlip installed) — only ``ase``, ``numpy``
and whatever the calculator factory imports. Started as::

    PYTHON worker.py --factory MODULE:FUNCTION [--settings JSON] [--name NAME]

``MODULE`` is an importable module name or a path to a ``.py`` file. The factory is called with the settings as
keyword arguments and must return an ASE calculator. The worker then speaks the firemlip teacher protocol
(version 1) over its standard streams, one JSON object per line:

* worker → parent, once: ``{"ready": true, "protocol": 1, "pid": ..., "implemented": [...], "versions": {...}}``
  or ``{"ready": false, "error": "..."}`` (then it exits with status 3).
* parent → worker: ``{"op": "calc", "id": N, "structures": [{"numbers", "positions" (Å), "cell" (Å), "pbc"}, ...],
  "stress": true}``; worker → parent: ``{"id": N, "results": [{"energy" (eV), "forces" (eV/Å), "stress"
  (eV/Å³ Voigt-6, ASE sign, or null), "error" (null or a one-line reason), "seconds"}, ...]}``.
* parent → worker: ``{"op": "ping"}`` → ``{"pong": true}``; ``{"op": "quit"}`` or end of input → exit 0.

Floats travel as JSON numbers, which Python writes with ``repr`` precision, so positions and results arrive
bit-identical (no dependence on the numpy version of either side). Anything the teacher prints goes to stderr:
the protocol stream is a private copy of the original stdout.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import time

PROTOCOL = 1


def _load_factory(spec: str):
    mod_name, _, fn_name = spec.rpartition(":")
    if not mod_name or not fn_name:
        raise ValueError(f"factory {spec!r}: expected MODULE:FUNCTION")
    if mod_name.endswith(".py") or os.sep in mod_name:
        path = os.path.abspath(mod_name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"factory module file {path} not found")
        mspec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
        module = importlib.util.module_from_spec(mspec)  # type: ignore[arg-type]
        mspec.loader.exec_module(module)  # type: ignore[union-attr]
    else:
        module = importlib.import_module(mod_name)
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise AttributeError(f"{mod_name} has no callable {fn_name!r}")
    return fn


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("ase", "numpy", "torch", "e3nn", "chgnet", "sevenn", "mace-torch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _compute(calc, s: dict, want_stress: bool) -> dict:
    import numpy as np
    from ase import Atoms

    t0 = time.time()
    try:
        atoms = Atoms(numbers=s["numbers"], positions=np.asarray(s["positions"], dtype=float),
                      cell=np.asarray(s["cell"], dtype=float), pbc=s["pbc"])
        # Each structure is independent: forget the previous one's state (neighbour lists, cached results),
        # so a label never depends on what the worker computed before.
        calc.reset()
        atoms.calc = calc
        e = float(atoms.get_potential_energy())
        f = np.asarray(atoms.get_forces(), dtype=float)
        stress = None
        if want_stress and all(atoms.pbc) and "stress" in getattr(calc, "implemented_properties", ["stress"]):
            try:
                stress = np.asarray(atoms.get_stress(voigt=True), dtype=float).reshape(6).tolist()
            except Exception:  # some calculators implement stress only for some settings
                stress = None
        if not np.isfinite(e) or not np.all(np.isfinite(f)):
            raise ValueError("non-finite energy or forces")
        return {"energy": e, "forces": f.tolist(), "stress": stress, "error": None, "seconds": time.time() - t0}
    except Exception as exc:  # one bad structure is reported, the worker goes on
        return {"energy": None, "forces": None, "stress": None, "error": _one_line(exc),
                "seconds": time.time() - t0}


def main(argv: list[str] | None = None) -> int:
    # The protocol gets a private copy of stdout; fd 1 (and sys.stdout) now go to stderr, so teacher banners
    # and warnings can never corrupt the stream.
    # Nothing in this script's directory may shadow the teacher's own modules.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    ap = argparse.ArgumentParser(prog="firemlip-teacher-worker")
    ap.add_argument("--factory", required=True)
    ap.add_argument("--settings", default="{}")
    ap.add_argument("--name", default="teacher")
    args = ap.parse_args(argv)

    def send(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    try:
        settings = json.loads(args.settings)
        calc = _load_factory(args.factory)(**settings)
        implemented = list(getattr(calc, "implemented_properties", []))
    except BaseException as exc:  # noqa: BLE001 - any start-up failure is reported to the parent
        send({"ready": False, "error": _one_line(exc)})
        return 3
    send({"ready": True, "protocol": PROTOCOL, "pid": os.getpid(), "implemented": implemented,
          "versions": _versions(), "name": args.name})
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        msg = json.loads(line)
        op = msg.get("op")
        if op == "quit":
            break
        if op == "ping":
            send({"pong": True})
            continue
        if op != "calc":
            send({"id": msg.get("id"), "fatal": f"unknown op {op!r}"})
            continue
        want_stress = bool(msg.get("stress", True))
        send({"id": msg.get("id"), "results": [_compute(calc, s, want_stress) for s in msg["structures"]]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
