"""Small helpers shared by the analysis modules: JSON output, matplotlib set-up, physical constants."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from firemlip.errors import FiremlipError

# CODATA 2018 exact values.
ELEMENTARY_CHARGE_C = 1.602176634e-19
BOLTZMANN_J_K = 1.380649e-23
BOLTZMANN_EV_K = 8.617333262e-5
#: 1 Å²/fs in cm²/s (1e-16 cm² / 1e-15 s).
A2_PER_FS_TO_CM2_PER_S = 0.1
#: 1 eV/Å³ in GPa.
EV_A3_TO_GPA = 160.21766208
#: 1 bar in GPa.
BAR_TO_GPA = 1e-4
#: Physical range of an ionic conductivity (S/cm): no solid or liquid electrolyte exceeds ~1 S/cm at room
#: temperature (the best superionic conductors reach 1e-2 to 1e-1), and below 1e-12 S/cm an extrapolated value
#: is indistinguishable from an insulator and far beyond what MD time scales can resolve. A σ outside it marks
#: the result invalid.
SIGMA_MAX_S_CM = 10.0
SIGMA_MIN_S_CM = 1e-12


def sigma_is_physical(sigma_S_cm: float) -> bool:
    """True when a conductivity (S/cm) lies in [SIGMA_MIN_S_CM, SIGMA_MAX_S_CM]."""
    return SIGMA_MIN_S_CM <= sigma_S_cm <= SIGMA_MAX_S_CM

#: Common formal (oxidation-state) charges of mobile ions, in units of e.
FORMAL_CHARGES: dict[str, int] = {
    "H": 1, "Li": 1, "Na": 1, "K": 1, "Rb": 1, "Cs": 1, "Ag": 1, "Cu": 1, "Tl": 1,
    "Mg": 2, "Ca": 2, "Zn": 2, "Sr": 2, "Ba": 2, "Al": 3, "Sc": 3, "Y": 3,
    "F": -1, "Cl": -1, "Br": -1, "I": -1, "O": -2, "S": -2, "Se": -2,
}


def formal_charge(species: str, charge: float | None = None) -> float:
    """The charge of one ``species`` ion in units of e: ``charge`` if given, else the table value."""
    if charge is not None:
        return float(charge)
    if species not in FORMAL_CHARGES:
        raise FiremlipError(f"no formal charge known for {species!r}: give it with --charge")
    return float(FORMAL_CHARGES[species])


def mpl():
    """matplotlib.pyplot with the non-interactive Agg backend."""
    from firemlip.runtime import pyplot

    plt = pyplot()

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str]) -> None:
    """Save a matplotlib figure as PNG atomically, then close it."""
    from firemlip.io import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    mpl().close(fig)


def clean(obj: Any) -> Any:
    """Replace NaN/inf floats by None recursively so the JSON stays standard."""
    if isinstance(obj, Mapping):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return clean(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_result(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Write an analysis result as JSON (atomic, NaN → null) and return its path."""
    from firemlip.io import write_json

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_json(p, clean(dict(data)))
    return p


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> dict[str, Any]:
    """Read a JSON object with one-line errors."""
    import json

    from firemlip.errors import require_file

    require_file(path, what)
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FiremlipError(f"{path}: cannot read {what} ({exc})") from None
    if not isinstance(data, dict):
        raise FiremlipError(f"{path}: expected a JSON object ({what})")
    return data
