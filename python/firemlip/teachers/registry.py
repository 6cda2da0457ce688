"""Which interpreter and factory a teacher name means: built-in teachers and ``worker:PYTHON:MODULE:FUNCTION``.

Built-in teachers live in their own virtual environments under ``$FIREMLIP_TEACHER_VENVS`` (default
``.venv-teachers/`` at the repository root, or in the current directory), created by ``make teachers``:

========  =============================================  ==========================================
name      package (weights shipped inside)               environment
========  =============================================  ==========================================
sevenn    ``sevenn==0.13.0`` (SevenNet-0; needs e3nn≥0.5) ``.venv-teachers/sevenn``
chgnet    ``chgnet==0.4.2`` (CHGNet 0.3.0)               ``.venv-teachers/chgnet``
========  =============================================  ==========================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firemlip.errors import FiremlipError

HERE = Path(__file__).resolve().parent
WORKER_SCRIPT = HERE / "worker.py"
FACTORIES = HERE / "factories.py"
DEFAULT_TEACHER = "sevenn"


@dataclass(frozen=True)
class BuiltinTeacher:
    """A teacher known by name: its factory in :mod:`firemlip.teachers.factories` and how to install it."""

    name: str
    factory: str
    packages: tuple[str, ...]
    description: str


BUILTIN_TEACHERS: dict[str, BuiltinTeacher] = {
    "sevenn": BuiltinTeacher("sevenn", "sevenn", ("torch==2.13.0", "sevenn==0.13.0"),
                             "SevenNet-0 (MIT; weights in sevenn/pretrained_potentials)"),
    "chgnet": BuiltinTeacher("chgnet", "chgnet", ("torch==2.13.0", "chgnet==0.4.2"),
                             "CHGNet 0.3.0 (Modified BSD; weights in chgnet/pretrained)"),
}


@dataclass(frozen=True)
class TeacherSpec:
    """A teacher that runs in a worker: interpreter, ``module:function`` factory (module may be a .py path),
    keyword settings for the factory, and a display name used in messages."""

    name: str
    python: str
    factory: str
    settings: dict[str, Any] = field(default_factory=dict)
    builtin: bool = False


def repo_root() -> Path:
    """The repository root of an editable install (``python/firemlip/teachers`` → three levels up)."""
    return HERE.parents[2]


def teacher_venvs_dir() -> Path:
    """Where built-in teacher venvs live: ``$FIREMLIP_TEACHER_VENVS``, else ``.venv-teachers`` in the repository
    root (editable install) or, failing that, in the current directory."""
    env = os.environ.get("FIREMLIP_TEACHER_VENVS")
    if env:
        return Path(env).expanduser()
    for base in (repo_root(), Path.cwd()):
        if (base / ".venv-teachers").is_dir():
            return base / ".venv-teachers"
    return repo_root() / ".venv-teachers"


def venv_python(venv: Path) -> Path:
    """The interpreter of a venv (POSIX or Windows layout)."""
    for rel in ("bin/python", "bin/python3", "Scripts/python.exe"):
        if (venv / rel).exists():
            return venv / rel
    return venv / "bin" / "python"


def is_worker_name(name: str) -> bool:
    """True for calculator names served by a worker process: ``worker:...`` and the built-in teachers."""
    return name.startswith("worker:") or name in BUILTIN_TEACHERS


def install_hint(name: str) -> str:
    """How to create a built-in teacher's environment, in one line."""
    t = BUILTIN_TEACHERS[name]
    venv = teacher_venvs_dir() / name
    return (f"create it with `make teachers` (or: python3 -m venv {venv} && {venv}/bin/pip install "
            f"{t.packages[0]} && {venv}/bin/pip install {' '.join(t.packages)})")


def resolve_teacher(name: str, settings: Mapping[str, Any] | None = None, check: bool = True) -> TeacherSpec:
    """The :class:`TeacherSpec` of ``sevenn``, ``chgnet`` or ``worker:PYTHON:MODULE:FUNCTION``.

    With ``check``, a missing environment or interpreter is a one-line :class:`FiremlipError` that says how to
    create it. ``settings`` become the factory's keyword arguments (built-in teachers accept ``device``).
    """
    s = dict(settings or {})
    if name in BUILTIN_TEACHERS:
        venv = teacher_venvs_dir() / name
        py = venv_python(venv)
        if check and not py.exists():
            raise FiremlipError(f"teacher {name}: its environment {venv} does not exist; {install_hint(name)}")
        return TeacherSpec(name, str(py), f"{FACTORIES}:{BUILTIN_TEACHERS[name].factory}", s, builtin=True)
    if not name.startswith("worker:"):
        raise FiremlipError(f"teacher {name!r}: not a worker teacher (expected {', '.join(BUILTIN_TEACHERS)} or "
                            f"worker:/path/to/python:module:function)")
    parts = name[len("worker:"):].rsplit(":", 2)
    if len(parts) != 3 or not all(parts):
        raise FiremlipError(f"teacher {name!r}: expected worker:/path/to/python:module:function (module may be a "
                            f".py file)")
    python, module, function = parts
    if check:
        if not Path(python).exists():
            raise FiremlipError(f"teacher {name!r}: interpreter {python} not found")
        if module.endswith(".py") and not Path(module).is_file():
            raise FiremlipError(f"teacher {name!r}: factory module file {module} not found")
    return TeacherSpec(name, python, f"{module}:{function}", s)
