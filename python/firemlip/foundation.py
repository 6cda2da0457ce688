"""Foundation models: resolve MACE-MP-0-family names to release files, download once, verify, load, inspect.

Named foundations (public release files of the ACEsuit/mace-mp project, the same URLs as mace-torch's
``mace.calculators.foundations_models.mace_mp_urls``):

=====================  =====================================================  ========================
name                   file                                                   sha256
=====================  =====================================================  ========================
``mace-mp-0-small``    ``2023-12-10-mace-128-L0_energy_epoch-249.model``      ``2ddb079c…``
``mace-mp-0-medium``   ``2023-12-03-mace-128-L1_epoch-199.model``             ``01bfe221…``
``mace-mpa-0-medium``  ``mace-mpa-0-medium.model``                            ``75428afe…``
``mace-omat-0-small``  ``mace-omat-0-small.model``                            (none published)
=====================  =====================================================  ========================

Files are cached in ``$FIREMLIP_CACHE`` (default ``~/.cache/firemlip/models``). Without network, put the file
into that directory by hand; the error message names both. Any local ``.model`` path works as well.
Units: cut-off ``r_max`` in Å, reference energies E0 in eV.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firemlip.errors import FiremlipError, require_file

_BASE = "https://github.com/ACEsuit/mace-mp/releases/download"


@dataclass(frozen=True)
class FoundationSpec:
    """A named public foundation model: where it lives, its sha256 (None where none is published)."""

    name: str
    url: str
    sha256: str | None
    mace_key: str  # the key of the same file in mace-torch's ``mace_mp_urls``

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


FOUNDATIONS: dict[str, FoundationSpec] = {
    s.name: s for s in (
        FoundationSpec("mace-mp-0-small", f"{_BASE}/mace_mp_0/2023-12-10-mace-128-L0_energy_epoch-249.model",
                       "2ddb079cee0e131eaaf6912ba581b394551ead283e95c99cfe78c605d10b5736", "small"),
        FoundationSpec("mace-mp-0-medium", f"{_BASE}/mace_mp_0/2023-12-03-mace-128-L1_epoch-199.model",
                       "01bfe22100139f424713cf921144e5509cbe353d67aa9fa1be9c6e1e0ed35845", "medium"),
        FoundationSpec("mace-mpa-0-medium", f"{_BASE}/mace_mpa_0/mace-mpa-0-medium.model",
                       "75428afe3a1d7d8062e19bcaabd5c433623cabf308242ec9fb493e38604fb638", "medium-mpa-0"),
        FoundationSpec("mace-omat-0-small", f"{_BASE}/mace_omat_0/mace-omat-0-small.model", None,
                       "small-omat-0"),
    )
}


def cache_dir() -> Path:
    """Directory holding downloaded foundation files: ``$FIREMLIP_CACHE`` or ``~/.cache/firemlip/models``."""
    env = os.environ.get("FIREMLIP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "firemlip" / "models"


def fetch(url: str, dest: str | os.PathLike[str], sha256: str | None = None, timeout: float = 60.0,
          progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` with a tqdm progress bar, verify ``sha256``, rename into place.

    A failed download or a checksum mismatch raises a one-line :class:`FiremlipError` that names the file and
    the directory to put it in by hand; nothing half-written is left at ``dest``.
    """
    from tqdm import tqdm

    from firemlip.io import atomic_path, file_sha256

    dest = Path(dest)
    hint = (f"without network, download {url} elsewhere and put it as {dest.name} into {dest.parent} "
            f"(or set FIREMLIP_CACHE to the directory that holds it)")
    try:
        with atomic_path(dest, suffix=".part") as tmp:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
                total = int(resp.headers.get("Content-Length", 0) or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress,
                          file=sys.stderr) as bar:
                    for block in iter(lambda: resp.read(1 << 18), b""):
                        out.write(block)
                        bar.update(len(block))
            if sha256 is not None:
                got = file_sha256(tmp)
                if got != sha256:
                    raise FiremlipError(f"{dest.name}: sha256 mismatch after download from {url} (got {got}, "
                                        f"expected {sha256}); {hint}")
    except FiremlipError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise FiremlipError(f"cannot download {dest.name} ({reason}); {hint}") from None
    return dest


def resolve_foundation(name_or_path: str | os.PathLike[str], download: bool = True) -> Path:
    """The local file of a foundation: a named model (downloaded once into :func:`cache_dir`) or a path.

    Cached files are verified against the published sha256 on every resolve (a corrupt file is an error naming
    it). Unknown names that are not existing files raise :class:`FiremlipError` listing the known names.
    """
    text = os.fspath(name_or_path)
    spec = FOUNDATIONS.get(text)
    if spec is None:
        if os.path.exists(text) or os.sep in text or text.endswith((".model", ".pt", ".pth")):
            require_file(text, "model file")
            return Path(text)
        raise FiremlipError(f"{text}: not a model file and not a known foundation "
                            f"(known: {', '.join(FOUNDATIONS)})")
    dest = cache_dir() / spec.filename
    if dest.exists():
        if spec.sha256 is not None:
            from firemlip.io import file_sha256

            got = file_sha256(dest)
            if got != spec.sha256:
                raise FiremlipError(f"{dest}: sha256 {got} does not match the published {spec.sha256} of "
                                    f"{spec.name}; delete it to download again")
        return dest
    if not download:
        raise FiremlipError(f"{spec.name}: {spec.filename} is not in {dest.parent}; download {spec.url} and put "
                            f"it there (or set FIREMLIP_CACHE)")
    return fetch(spec.url, dest, spec.sha256)


def is_mace_model(obj: Any) -> bool:
    """True for a mace-torch energy model module (``MACE``/``ScaleShiftMACE`` or subclasses)."""
    import torch

    return isinstance(obj, torch.nn.Module) and all(
        hasattr(obj, a) for a in ("atomic_numbers", "r_max", "interactions", "atomic_energies_fn"))


def load_model(path_or_name: str | os.PathLike[str], device: str = "cpu", dtype: str | None = "float64"):
    """Load a MACE ``.model`` (path or foundation name) onto ``device`` in ``dtype`` (None keeps the file's).

    Anything that is not a whole pickled mace-torch model raises a one-line :class:`FiremlipError`.
    """
    import torch

    path = resolve_foundation(path_or_name)
    _check_device(device)
    try:
        model = torch.load(os.fspath(path), map_location=device, weights_only=False)
    except Exception as exc:  # torch raises many kinds (zip, pickle, unicode) for non-model files
        msg = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise FiremlipError(f"{path}: not a MACE model file (torch.load failed: {msg})") from None
    if not is_mace_model(model):
        raise FiremlipError(f"{path}: not a MACE model file (holds {type(model).__name__}, expected a mace-torch "
                            f"model saved whole with torch.save)")
    if dtype is not None:
        model = model.to(_torch_dtype(dtype))
    return model.to(device)


def _torch_dtype(dtype: str):
    import torch

    if dtype not in ("float64", "float32"):
        raise FiremlipError(f"dtype: expected float64 or float32, got {dtype!r}")
    return getattr(torch, dtype)


def _check_device(device: str) -> None:
    import torch

    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise FiremlipError(f"device {device}: CUDA is not available on this machine (use --device cpu)")
    if not (str(device) == "cpu" or str(device).startswith("cuda")):
        raise FiremlipError(f"device: expected cpu or cuda, got {device!r}")


def model_elements(model) -> list[str]:
    """Chemical symbols the model covers, in the order of its atomic-number table."""
    from ase.data import chemical_symbols

    return [chemical_symbols[int(z)] for z in model.atomic_numbers]


def model_heads(model) -> list[str]:
    """The model's output heads (``['Default']`` for single-head models)."""
    heads = getattr(model, "heads", None)
    return list(heads) if heads else ["Default"]


def default_head(model) -> str:
    """The head used when none is named: the only one, else one called ``default`` (any case, as
    ``MACECalculator`` does), else the last."""
    heads = model_heads(model)
    if len(heads) == 1:
        return heads[0]
    named = [h for h in heads if h.lower() == "default"]
    return named[0] if named else heads[-1]


def model_info(model) -> dict[str, Any]:
    """Architecture summary: elements, r_max (Å), channels, L (max hidden irrep), max_ell, interactions,
    correlation, heads, parameter count, dtype, class and E0s (eV per element)."""
    from e3nn import o3

    hidden = o3.Irreps(str(model.products[0].linear.irreps_out))
    channels = max((mul for mul, _ in hidden), default=0)
    L = max((ir.l for _, ir in hidden), default=0)
    try:
        correlation = len(model.products[0].symmetric_contractions.contractions[0].weights) + 1
    except AttributeError:
        correlation = getattr(model.products[0].symmetric_contractions, "contraction_degree", None)
    e0 = model.atomic_energies_fn.atomic_energies.detach().cpu().double().numpy()
    elements = model_elements(model)
    heads = model_heads(model)
    e0s = {}
    if e0.ndim == 2:  # multi-head: one row per head
        for h, row in zip(heads, e0, strict=False):
            e0s[h] = {el: float(v) for el, v in zip(elements, row, strict=True)}
    else:
        e0s = {el: float(v) for el, v in zip(elements, e0, strict=True)}
    param = next(model.parameters())
    return {
        "class": type(model).__name__,
        "elements": elements,
        "r_max_A": float(model.r_max),
        "channels": int(channels),
        "L": int(L),
        "hidden_irreps": str(hidden),
        "max_ell": int(model.spherical_harmonics._lmax),  # noqa: SLF001
        "num_interactions": int(model.num_interactions),
        "correlation": correlation,
        "heads": heads,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "dtype": str(param.dtype).replace("torch.", ""),
        "E0s_eV": e0s,
    }


def check_elements(model, frames: Sequence, path: str | os.PathLike[str] = "<frames>") -> None:
    """Raise :class:`FiremlipError` naming ``path`` when ``frames`` hold an element the model lacks."""
    have = set(model_elements(model))
    missing = sorted({s for a in frames for s in a.get_chemical_symbols()} - have)
    if missing:
        raise FiremlipError(f"{os.fspath(path)}: element(s) {', '.join(missing)} not covered by the model "
                            f"(it has {', '.join(sorted(have))})")
