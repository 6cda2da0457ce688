"""Process-wide settings that firemlip needs from its dependencies, set in this one place.

- torch ≥ 2.6 loads files with ``weights_only=True`` by default, which e3nn's constants and MACE ``.model`` files
  (whole pickled modules) do not pass: :func:`allow_full_torch_load` sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``
  (unless the user set it) before any of them is loaded, and :data:`TORCH_LOAD_ENV` is the same setting for child
  processes (``mace_run_train``, LAMMPS, teacher workers).
- Plots are written to files on machines without a display: :func:`pyplot` selects matplotlib's ``Agg`` backend
  before ``matplotlib.pyplot`` is imported and returns that module.

Only trusted model files should be loaded this way (they are pickles); firemlip loads the user's own files and
the MACE-MP-0 family it downloads and checks by sha256.
"""

from __future__ import annotations

import os
from typing import Any

#: the environment setting that lets torch load MACE/e3nn files (for child processes' environments)
TORCH_LOAD_ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}


def allow_full_torch_load(env: dict[str, str] | None = None) -> dict[str, str] | None:
    """Set ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` in ``env`` (default: this process), keeping a user's value."""
    target: Any = os.environ if env is None else env
    for k, v in TORCH_LOAD_ENV.items():
        target.setdefault(k, v)
    return env


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the non-interactive ``Agg`` backend (PNG files, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
