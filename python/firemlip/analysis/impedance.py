"""Measured impedance spectra: equivalent-circuit fit (the ``impedance`` package) and ionic conductivity.

Input: a text/CSV file with three columns — frequency (Hz), Z′ (Ω), Z″ (Ω) — separated by commas, semicolons,
tabs or spaces, optionally with a header line. Z″ may be given as measured (negative for a capacitive arc) or
as −Z″ (positive); the sign convention is detected from the data and recorded.

The default circuit ``R0-p(R1,CPE1)-CPE2`` describes a pellet between ion-blocking electrodes: series
resistance R0, the bulk (grain) arc R1‖CPE1 and the electrode spike CPE2. The ionic resistance is R0 + R1 by
default (the low-frequency end of the arc, i.e. bulk plus any unresolved contribution) or R1 alone
(``resistance="R1"``). σ = thickness / (R · area) in S/cm (thickness in cm, area in cm², R in Ω).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from firemlip.analysis._common import mpl, read_json, save_figure, write_result
from firemlip.errors import FiremlipError, require_file

DEFAULT_CIRCUIT = "R0-p(R1,CPE1)-CPE2"


def read_impedance(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, str]:
    """Read (frequency Hz, complex Z Ω, sign note). One-line errors for a wrong column count or values."""
    require_file(path, "impedance file")
    rows = []
    for ln, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = [p for p in re.split(r"[,;\s]+", s) if p]
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            if not rows:
                continue  # a header line
            raise FiremlipError(f"{path}:{ln}: non-numeric value in an impedance row ({s[:60]!r})") from None
        if len(vals) != 3:
            raise FiremlipError(f"{path}:{ln}: expected 3 columns (frequency_Hz, Z_real_ohm, Z_imag_ohm), "
                                f"got {len(vals)}")
        rows.append(vals)
    if len(rows) < 8:
        raise FiremlipError(f"{path}: too few impedance points for a fit ({len(rows)}; need at least 8)")
    a = np.asarray(rows)
    f, zr, zi = a[:, 0], a[:, 1], a[:, 2]
    if np.any(f <= 0) or not np.all(np.isfinite(a)):
        raise FiremlipError(f"{path}: frequencies must be positive and all values finite "
                            "(columns: frequency_Hz, Z_real_ohm, Z_imag_ohm)")
    note = "Z'' as given (negative = capacitive)"
    if np.median(zi) > 0:
        zi = -zi
        note = "third column read as -Z'' (sign flipped)"
    order = np.argsort(f)[::-1]
    return f[order], (zr + 1j * zi)[order], note


def _initial_guess(f: np.ndarray, Z: np.ndarray) -> list[float]:
    """R0, R1, Q1, α1, Q2, α2 from the spectrum's shape (f sorted high → low)."""
    w = 2 * np.pi * f
    mz = -Z.imag
    R0 = max(float(Z.real[0]), 1e-6 * float(np.abs(Z).max()))
    # the valley between the arc and the spike: minimum of −Z'' after the first maximum
    i_peak = int(np.argmax(mz[: max(len(mz) // 2, 2)]))
    i_val = i_peak + int(np.argmin(mz[i_peak:])) if i_peak < len(mz) - 1 else len(mz) - 1
    R1 = max(float(Z.real[i_val] - R0), 1e-3 * R0 + 1e-9)
    Q1 = 1.0 / (R1 * w[i_peak])
    Q2 = 1.0 / (w[-1] * max(float(mz[-1]), 1e-12))
    return [R0, R1, Q1, 0.9, Q2, 0.8]


def fit_impedance(f: np.ndarray, Z: np.ndarray, circuit: str = DEFAULT_CIRCUIT,
                  initial_guess: Sequence[float] | None = None) -> dict[str, Any]:
    """Fit an equivalent circuit: the circuit model of the ``impedance`` package (``CustomCircuit``,
    ``fitting.wrapCircuit``), parameters fitted in log space with ``scipy.optimize.least_squares`` (residuals
    relative to |Z|) from several starts, because R (~10²–10⁶ Ω) and Q (~10⁻¹⁰ F·s^(α−1)) differ by many
    orders of magnitude and a direct fit stalls. Returns names, values, 1σ errors (from the Jacobian),
    units, the relative RMS residual and the fitted curve.
    """
    import itertools

    from impedance.models.circuits import CustomCircuit
    from impedance.models.circuits.fitting import wrapCircuit
    from scipy.optimize import least_squares

    guess = list(initial_guess) if initial_guess is not None else (
        _initial_guess(f, Z) if circuit == DEFAULT_CIRCUIT else None)
    if guess is None:
        raise FiremlipError(f"circuit {circuit!r} needs an initial guess (--initial-guess)")
    try:
        c = CustomCircuit(circuit, initial_guess=guess)
        names, units = c.get_param_names()
        model = wrapCircuit(circuit, {})
        model(f[:2], *guess)
    except Exception as exc:  # impedance raises several types for bad circuit strings
        raise FiremlipError(f"bad circuit {circuit!r} or initial guess ({str(exc).splitlines()[0][:120]})") from None
    if len(guess) != len(names) or any(g <= 0 for g in guess):
        raise FiremlipError(f"initial guess needs {len(names)} positive values ({', '.join(names)})")
    n = len(f)
    target = np.concatenate([Z.real, Z.imag])
    scale = np.concatenate([np.abs(Z), np.abs(Z)])
    is_alpha = np.array([u == "" for u in units])

    def resid(logp: np.ndarray) -> np.ndarray:
        return (model(f, *np.exp(logp)) - target) / scale

    # exponents α of CPEs are bounded to (0, 1]; everything else positive
    ub = np.where(is_alpha, 0.0, np.inf)
    lb = np.full(len(guess), -np.inf)
    starts = [np.log(guess)]
    q_idx = [i for i, u in enumerate(units) if u.startswith("Ohm^-1") or u == "F"]
    for mult, alpha in itertools.product((0.1, 10.0), (0.7, 0.9)):
        g = np.log(np.asarray(guess, float))
        for i in q_idx:
            g[i] += np.log(mult)
        g[is_alpha] = np.log(alpha)
        starts.append(g)
    best = None
    for g in starts:  # coarse fits from every start, then the best one refined
        g = np.minimum(g, ub - 1e-9)
        try:
            r = least_squares(resid, g, bounds=(lb, ub), max_nfev=60)
        except (ValueError, FloatingPointError, OverflowError):
            continue
        if np.isfinite(r.cost) and (best is None or r.cost < best.cost):
            best = r
    if best is None:
        raise FiremlipError(f"impedance fit failed for circuit {circuit!r}")
    best = least_squares(resid, best.x, bounds=(lb, ub), max_nfev=2000)
    p = np.exp(best.x)
    dof = max(2 * n - len(p), 1)
    s2 = 2 * best.cost / dof
    try:
        cov_log = np.linalg.inv(best.jac.T @ best.jac) * s2
        err = p * np.sqrt(np.clip(np.diag(cov_log), 0, None))
    except np.linalg.LinAlgError:
        err = np.full_like(p, np.nan)
    zf = model(f, *p)
    Zfit = zf[:n] + 1j * zf[n:]
    rel_resid = float(np.sqrt(np.mean(np.abs(Z - Zfit) ** 2 / np.abs(Z) ** 2)))
    return {"circuit": circuit, "names": list(names), "units": list(units), "values": p.tolist(),
            "errors": err.tolist(), "relative_rms_residual": rel_resid, "Z_fit": Zfit}


def analyze_impedance(data_file: str | os.PathLike[str], thickness_cm: float, area_cm2: float,
                      out_dir: str | os.PathLike[str], *, circuit: str = DEFAULT_CIRCUIT,
                      resistance: str = "R0+R1", temperature_K: float | None = None,
                      simulated: Sequence[str | os.PathLike[str]] = (),
                      initial_guess: Sequence[float] | None = None) -> dict[str, Any]:
    """Impedance stage: fit, σ = thickness/(R·area) in S/cm, Nyquist plot; writes ``impedance.json`` and
    ``nyquist.png``. ``resistance``: '+'-joined parameter names summed into the ionic resistance (Ω).
    ``simulated``: ``conductivity.json`` / ``arrhenius.json`` files put in one comparison table with the
    measured σ (the paper's Fig. 4A)."""
    if not thickness_cm or thickness_cm <= 0 or not area_cm2 or area_cm2 <= 0:
        raise FiremlipError("impedance: pellet thickness (cm) and electrode area (cm²) must be positive")
    f, Z, note = read_impedance(data_file)
    fit = fit_impedance(f, Z, circuit, initial_guess)
    parts = [s.strip() for s in resistance.split("+") if s.strip()]
    idx = []
    for name in parts:
        if name not in fit["names"]:
            raise FiremlipError(f"impedance: resistance {name!r} is not a parameter of {circuit} "
                                f"({', '.join(fit['names'])})")
        idx.append(fit["names"].index(name))
    R = float(sum(fit["values"][i] for i in idx))
    Rerr = float(np.sqrt(sum((fit["errors"][i] or 0.0) ** 2 for i in idx)))
    sigma = thickness_cm / (R * area_cm2)
    res: dict[str, Any] = {
        "analysis": "impedance", "data_file": str(data_file), "sign_convention": note,
        "n_points": int(len(f)), "frequency_range_Hz": [float(f.min()), float(f.max())],
        "circuit": circuit,
        "parameters": {n: {"value": v, "error": e, "unit": u}
                       for n, v, e, u in zip(fit["names"], fit["values"], fit["errors"], fit["units"], strict=False)},
        "relative_rms_residual": fit["relative_rms_residual"],
        "resistance": resistance, "resistance_ohm": R, "resistance_err_ohm": Rerr,
        "thickness_cm": thickness_cm, "area_cm2": area_cm2, "temperature_K": temperature_K,
        "sigma_S_cm": sigma, "sigma_err_S_cm": sigma * Rerr / R if np.isfinite(Rerr) else None,
        "units": {"sigma": "S/cm", "resistance": "ohm", "frequency": "Hz", "thickness": "cm", "area": "cm^2"},
    }
    table = [{"source": f"measured ({Path(data_file).name})", "temperature_K": temperature_K,
              "sigma_S_cm": sigma, "sigma_err_S_cm": res["sigma_err_S_cm"]}]
    for s in simulated:
        d = read_json(s, "simulated conductivity result")
        if "sigma_tracer_S_cm" in d:
            table.append({"source": f"simulated tracer ({Path(s).name})", "temperature_K": d.get("temperature_K"),
                          "sigma_S_cm": d["sigma_tracer_S_cm"], "sigma_err_S_cm": d.get("sigma_tracer_err_S_cm")})
            if d.get("sigma_charge_S_cm") is not None:
                table.append({"source": f"simulated charge, H_R {d.get('haven_source')} ({Path(s).name})",
                              "temperature_K": d.get("temperature_K"), "sigma_S_cm": d["sigma_charge_S_cm"],
                              "sigma_err_S_cm": d.get("sigma_charge_err_S_cm")})
        elif "sigma_tracer_target_S_cm" in d:
            table.append({"source": f"simulated Arrhenius extrapolation ({Path(s).name})",
                          "temperature_K": d.get("target_temperature_K"), "sigma_S_cm": d["sigma_tracer_target_S_cm"],
                          "sigma_band_S_cm": d.get("sigma_tracer_target_band_S_cm")})
            if d.get("sigma_charge_target_S_cm") is not None:
                table.append({"source": f"simulated Arrhenius, charge-based ({Path(s).name})",
                              "temperature_K": d.get("target_temperature_K"),
                              "sigma_S_cm": d["sigma_charge_target_S_cm"],
                              "sigma_band_S_cm": d.get("sigma_charge_target_band_S_cm")})
        else:
            raise FiremlipError(f"{s}: not a conductivity.json or arrhenius.json (no sigma values)")
    res["comparison"] = table
    out = Path(out_dir)
    plt = mpl()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for k, ax in enumerate(axes):
        ax.plot(Z.real, -Z.imag, "o", ms=3, label="measured")
        ax.plot(fit["Z_fit"].real, -fit["Z_fit"].imag, "r-", lw=1.2, label=f"fit {circuit}")
        ax.axvline(R, color="gray", ls=":", lw=1, label=f"R = {R:.4g} Ω → σ = {sigma:.3g} S/cm")
        ax.set_xlabel("Z′ (Ω)")
        ax.set_ylabel("−Z″ (Ω)")
        if k == 1:  # zoom on the bulk arc
            ax.set_xlim(0, 2.0 * R)
            ax.set_ylim(0, 1.2 * R)
            ax.set_aspect("equal")
            ax.set_title("arc region")
        else:
            ax.set_title("full spectrum")
            ax.legend(fontsize=7)
    save_figure(fig, out / "nyquist.png")
    res["plot"] = "nyquist.png"
    write_result(out / "impedance.json", res)
    return res
