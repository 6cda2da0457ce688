"""Teachers for distillation and labelling that run in their own Python interpreter (worker protocol).

A teacher whose dependencies conflict with mace-torch (SevenNet needs e3nn ≥ 0.5) runs in its own venv: firemlip
starts that interpreter once, keeps it alive, and sends it batches of structures (JSON lines over stdin/stdout;
energy eV, forces eV/Å, stress eV/Å³ back). Names:

* ``sevenn`` (SevenNet-0, the default teacher) and ``chgnet`` — venvs under ``.venv-teachers/<name>/`` made by
  ``make teachers``;
* ``worker:/path/to/python:module:function`` — any ASE calculator factory in any interpreter (``module`` may be a
  ``.py`` file path; settings become the factory's keyword arguments).

The same names work in ``firemlip label -c ...`` and ``firemlip foundation distill --teacher ...``.
Python: :func:`resolve_teacher`, :class:`TeacherWorker`, :class:`WorkerCalculator`, :func:`label_with_worker`,
:func:`shared_workers`.
"""

from __future__ import annotations

from firemlip.teachers.client import (
    TeacherWorker,
    WorkerCalculator,
    get_worker,
    label_with_worker,
    shared_workers,
    structure_message,
    worker_calculator,
)
from firemlip.teachers.registry import (
    BUILTIN_TEACHERS,
    DEFAULT_TEACHER,
    TeacherSpec,
    install_hint,
    is_worker_name,
    resolve_teacher,
    teacher_venvs_dir,
)

__all__ = [
    "BUILTIN_TEACHERS", "DEFAULT_TEACHER", "TeacherSpec", "TeacherWorker", "WorkerCalculator", "get_worker",
    "install_hint", "is_worker_name", "label_with_worker", "resolve_teacher", "shared_workers",
    "structure_message", "teacher_venvs_dir", "worker_calculator",
]
