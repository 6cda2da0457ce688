"""Arrhenius analysis: D(T) = D0 exp(−Ea / k_B T), activation energy and extrapolation to room temperature.

The fit is a weighted straight line ln D = ln D0 − (Ea/k_B)(1/T) with σ(ln D) = σ_D / D (weighted least squares,
absolute errors; when χ²/dof > 1 the covariance is scaled by it so scatter beyond the error bars widens the
uncertainty). Ea in eV, D in cm²/s, σ in S/cm, T in K. The extrapolated ln D(T*) has variance
J Σ Jᵀ with J = (1, 1/T*); the confidence band uses Student's t with the fit's degrees of freedom.

Guards (:func:`analyze_arrhenius`): temperatures whose diffusion result is invalid (non-diffusive MSD, D ≤ 0,
melted or collapsed framework, …; see :func:`firemlip.analysis.diffusion.diffusion_validity`) are left out of
the fit and listed with their reasons. The result is ``valid: false`` with ``invalid_reasons`` when fewer than
``MIN_ARRHENIUS_TEMPERATURES`` diffusive temperatures remain, when Ea ≤ 0 or not larger than its error
(``activation_energy_valid: false`` too), or when the extrapolation is not informative (a confidence band of
D(T*) wider than ``MAX_BAND_RATIO``) or the extrapolated σ lies outside [``SIGMA_MIN_S_CM``, ``SIGMA_MAX_S_CM``]
(``extrapolation_valid: false`` only: Ea with its error bar can still be quoted). A too-wide band whose ends are all
physical σ values is ``extrapolation_indicative: true``: σ is shown with its band as an order of magnitude, flagged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from firemlip.analysis._common import (
    BOLTZMANN_EV_K,
    SIGMA_MAX_S_CM,
    SIGMA_MIN_S_CM,
    mpl,
    read_json,
    save_figure,
    sigma_is_physical,
    write_result,
)
from firemlip.errors import FiremlipError
from firemlip.options import ArrheniusOptions

#: An Arrhenius fit over fewer diffusive temperatures than this is reported but marked invalid.
#: the defaults of the fit (defined once, in :class:`firemlip.options.ArrheniusOptions`)
_A = ArrheniusOptions()
MIN_ARRHENIUS_TEMPERATURES = 3
#: An extrapolated D (and so σ) whose confidence band spans more than this factor (upper / lower bound) is not a
#: result: 1000× is three decades, already wider than the spread between good and poor solid electrolytes.
MAX_BAND_RATIO = 1000.0


def arrhenius_fit(temperatures_K: Sequence[float], diffusivities_cm2_s: Sequence[float],
                  errors_cm2_s: Sequence[float] | None = None, target_T_K: float = _A.target_T_K,
                  confidence: float = _A.confidence) -> dict[str, Any]:
    """Fit ln D vs 1/T; return Ea (eV) ± 1σ, D0 (cm²/s), and D at ``target_T_K`` with a confidence band.

    With errors, two temperatures suffice (the error bars alone fix the uncertainty); without, at least three.
    """
    from scipy import stats

    T = np.asarray(temperatures_K, float)
    D = np.asarray(diffusivities_cm2_s, float)
    if T.shape != D.shape or T.ndim != 1:
        raise FiremlipError("arrhenius: temperatures and diffusivities must be 1-D lists of equal length")
    if np.any(~np.isfinite(T)) or np.any(T <= 0):
        raise FiremlipError("arrhenius: every temperature must be a positive number in K")
    if np.any(~np.isfinite(D)) or np.any(D <= 0):
        raise FiremlipError("arrhenius: every diffusivity must be positive (a non-diffusive run gives D ≤ 0)")
    if len(np.unique(T)) < 2:
        raise FiremlipError(f"arrhenius: too few temperatures for a fit ({len(np.unique(T))}; need at least 2)")
    x, y = 1.0 / T, np.log(D)
    if errors_cm2_s is not None:
        E = np.asarray(errors_cm2_s, float)
        if E.shape != D.shape or np.any(~np.isfinite(E)) or np.any(E <= 0):
            raise FiremlipError("arrhenius: errors must be positive numbers, one per temperature")
        sy = E / D
    else:
        if len(T) < 3:
            raise FiremlipError("arrhenius: without error bars at least 3 temperatures are needed")
        sy = None
    dof = len(T) - 2
    # Weighted linear least squares in centred x (well conditioned), then back to (ln D0, slope).
    w = np.ones_like(x) if sy is None else 1.0 / sy ** 2
    xm = float(np.sum(w * x) / np.sum(w))
    A = np.vstack([np.ones_like(x), x - xm]).T
    cov_c = np.linalg.inv(A.T @ (A * w[:, None]))
    pc = cov_c @ (A.T @ (w * y))
    resid = y - A @ pc
    chi2 = float(np.sum(w * resid ** 2))
    if sy is None:
        cov_c = cov_c * chi2 / dof  # errors from the scatter
    chi2_red = chi2 / dof if (sy is not None and dof > 0) else float("nan")
    scaled = bool(sy is not None and dof > 0 and chi2_red > 1.0)
    if scaled:
        cov_c = cov_c * chi2_red
    Tm = np.array([[1.0, -xm], [0.0, 1.0]])  # (a, b) = Tm @ (a_c, b)
    p = Tm @ pc
    cov = Tm @ cov_c @ Tm.T
    a, b = float(p[0]), float(p[1])
    Ea = -b * BOLTZMANN_EV_K
    Ea_err = float(np.sqrt(cov[1, 1])) * BOLTZMANN_EV_K
    z = float(stats.t.ppf(0.5 + confidence / 2, dof)) if (sy is None or scaled) else \
        float(stats.norm.ppf(0.5 + confidence / 2))
    J = np.array([1.0, 1.0 / target_T_K])
    s_ln = float(np.sqrt(J @ cov @ J))
    lnD = a + b / target_T_K
    return {
        "activation_energy_eV": Ea, "activation_energy_err_eV": Ea_err,
        "prefactor_D0_cm2_s": float(np.exp(a)), "ln_D0_err": float(np.sqrt(cov[0, 0])),
        "covariance_lnD0_slope": cov.tolist(), "chi2_reduced": chi2_red, "covariance_scaled_by_chi2": scaled,
        "n_temperatures": int(len(T)), "temperatures_K": T.tolist(), "diffusivities_cm2_s": D.tolist(),
        "errors_cm2_s": None if errors_cm2_s is None else np.asarray(errors_cm2_s, float).tolist(),
        "target_temperature_K": float(target_T_K), "confidence": confidence, "band_z": z,
        "diffusivity_target_cm2_s": float(np.exp(lnD)),
        "diffusivity_target_err_cm2_s": float(np.exp(lnD) * s_ln),
        "diffusivity_target_band_cm2_s": [float(np.exp(min(lnD - z * s_ln, 700.0))),
                                          float(np.exp(min(lnD + z * s_ln, 700.0)))],
        "_ln_sigma_target": s_ln,
    }


def _ln_band(fit: dict[str, Any], T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.log(fit["prefactor_D0_cm2_s"])
    b = -fit["activation_energy_eV"] / BOLTZMANN_EV_K
    cov = np.asarray(fit["covariance_lnD0_slope"])
    J = np.vstack([np.ones_like(T), 1.0 / T])
    s = np.sqrt(np.einsum("in,ij,jn->n", J, cov, J))
    return a + b / T, s


def activation_energy_validity(res: dict[str, Any]) -> list[str]:
    """Reasons why the fitted Ea of an ``arrhenius.json`` content cannot be quoted; empty when it can.

    Checks: at least MIN_ARRHENIUS_TEMPERATURES diffusive temperatures in the fit, Ea > 0 and larger than its 1σ
    error.
    """
    reasons: list[str] = []
    n = res.get("n_temperatures") or 0
    n_ex = res.get("n_excluded") or 0
    if n < MIN_ARRHENIUS_TEMPERATURES:
        reasons.append(f"only {n} diffusive temperature(s) in the fit (need at least {MIN_ARRHENIUS_TEMPERATURES})"
                       + (f"; {n_ex} excluded" if n_ex else ""))
    ea = res.get("activation_energy_eV")
    ea_err = res.get("activation_energy_err_eV")
    if ea is not None and not ea > 0:
        reasons.append(f"Ea = {ea:.3g} eV <= 0: D does not increase with temperature")
    elif ea is not None and ea_err is not None and not ea_err < ea:
        reasons.append(f"Ea = {ea:.3g} ± {ea_err:.2g} eV is not resolved (its error is as large as the value): "
                       f"the temperatures are too close or the D values too noisy")
    return reasons


def extrapolation_validity(res: dict[str, Any]) -> list[str]:
    """Reasons why the extrapolated D and σ at the target temperature cannot be quoted, beyond those of the Ea.

    Checks: a band of the extrapolated D narrower than MAX_BAND_RATIO, every extrapolated σ within
    [SIGMA_MIN_S_CM, SIGMA_MAX_S_CM].
    """
    reasons: list[str] = []
    band = res.get("diffusivity_target_band_cm2_s")
    if band and band[0] > 0 and band[1] / band[0] > MAX_BAND_RATIO:
        reasons.append(f"the {res.get('confidence', 0.95):.0%} band of D({res.get('target_temperature_K', 300.0):g} K) "
                       f"spans {np.log10(band[1] / band[0]):.1f} decades (> {np.log10(MAX_BAND_RATIO):.0f}): the "
                       f"extrapolation is not informative")
    Tt = res.get("target_temperature_K", 300.0)
    for key in ("sigma_tracer_target_S_cm", "sigma_charge_target_S_cm"):
        v = res.get(key)
        if v is not None and not sigma_is_physical(v):
            reasons.append(f"extrapolated {key.split('_')[1]} sigma({Tt:g} K) = {v:.3g} S/cm outside the physical "
                           f"range {SIGMA_MIN_S_CM:g}-{SIGMA_MAX_S_CM:g} S/cm")
    return reasons


def extrapolation_indicative(res: dict[str, Any]) -> bool:
    """True when an extrapolation that is not a result (:func:`extrapolation_validity`) can still be shown as an
    order of magnitude: Ea is valid (:func:`activation_energy_validity`), the only objection is the width of the
    band, and every extrapolated σ with both ends of its band lies in [SIGMA_MIN_S_CM, SIGMA_MAX_S_CM] — so no
    impossible number is shown. The demo summary and the report then print σ with its band, flagged."""
    if activation_energy_validity(res) or not extrapolation_validity(res):
        return False
    shown = False
    for key in ("sigma_tracer_target", "sigma_charge_target"):
        v, band = res.get(f"{key}_S_cm"), res.get(f"{key}_band_S_cm")
        if v is None:
            continue
        if not band or not all(sigma_is_physical(x) for x in (v, *band)):
            return False
        shown = True
    return shown


def arrhenius_validity(res: dict[str, Any]) -> list[str]:
    """Reasons why an ``arrhenius.json`` content (Ea, extrapolated D and σ) cannot be trusted as a whole; empty
    when it can: :func:`activation_energy_validity` then :func:`extrapolation_validity`. Works on results written
    before ``valid`` existed."""
    return activation_energy_validity(res) + extrapolation_validity(res)


def analyze_arrhenius(results: Sequence[str | os.PathLike[str] | dict[str, Any]], out_dir: str | os.PathLike[str],
                      *, target_T_K: float = _A.target_T_K, confidence: float = _A.confidence,
                      haven: float | None = None, charge: float | None = None) -> dict[str, Any]:
    """Arrhenius stage over ``diffusion.json`` results (paths or dicts) of one species at several T.

    Writes ``arrhenius.json`` and ``arrhenius.png``. Results that are invalid (non-diffusive, D ≤ 0, melted, …)
    are excluded from the fit and listed in ``excluded`` with their reasons. σ at ``target_T_K`` (S/cm) follows
    from the extrapolated D with the mean number density of the runs: tracer-based (H_R = 1) and charge-based
    with the mean computed Haven ratio of the fitted runs, else ``haven`` (reported as assumed). The result
    always carries ``valid`` and ``invalid_reasons`` (:func:`arrhenius_validity`); with fewer than two usable
    temperatures nothing is fitted (Ea and σ are null) and the result is invalid.
    """
    from firemlip.analysis._common import formal_charge
    from firemlip.analysis.conductivity import nernst_einstein
    from firemlip.analysis.diffusion import diffusion_validity

    rows = []
    for r in results:
        name = str(r) if not isinstance(r, dict) else "result"
        d = r if isinstance(r, dict) else read_json(r, "diffusion result")
        if d.get("temperature_K") is None:
            raise FiremlipError(f"{name}: no temperature_K in the diffusion result")
        if "diffusivity_cm2_s" not in d:
            raise FiremlipError(f"{name}: no diffusivity_cm2_s in the diffusion result")
        rows.append((name, d))
    if not rows:
        raise FiremlipError("arrhenius: no diffusion results given")
    species = {d.get("species") for _, d in rows}
    if len(species) > 1:
        raise FiremlipError(f"arrhenius: results mix species {sorted(map(str, species))}")
    sp = species.pop()
    used, excluded = [], []
    for name, d in rows:
        why = list(d["invalid_reasons"]) if d.get("valid") is False and d.get("invalid_reasons") else \
            (["marked invalid"] if d.get("valid") is False else diffusion_validity(d))
        if why:
            excluded.append({"input": name, "temperature_K": float(d["temperature_K"]),
                             "diffusivity_cm2_s": d.get("diffusivity_cm2_s"), "reasons": why})
        else:
            used.append((name, d))
    T = [float(d["temperature_K"]) for _, d in used]
    D = [float(d["diffusivity_cm2_s"]) for _, d in used]
    errs = [d.get("diffusivity_err_cm2_s") for _, d in used]
    E = None if any(e is None or not e > 0 for e in errs) else [float(e) for e in errs]
    fit: dict[str, Any] | None = None
    fit_note = None
    if len(set(T)) >= 2:
        try:
            fit = arrhenius_fit(T, D, E, target_T_K=target_T_K, confidence=confidence)
        except FiremlipError as exc:
            fit_note = str(exc)
    else:
        fit_note = f"not fitted: {len(set(T))} usable temperature(s)"
    res: dict[str, Any] = {"analysis": "arrhenius", "species": sp, "inputs": [n for n, _ in rows],
                           "inputs_used": [n for n, _ in used], "n_excluded": len(excluded), "excluded": excluded}
    if fit is not None:
        res.update(fit)
    else:
        res.update(activation_energy_eV=None, activation_energy_err_eV=None, prefactor_D0_cm2_s=None,
                   n_temperatures=len(used), temperatures_K=T, diffusivities_cm2_s=D, errors_cm2_s=E,
                   target_temperature_K=float(target_T_K), confidence=confidence,
                   diffusivity_target_cm2_s=None, diffusivity_target_err_cm2_s=None,
                   diffusivity_target_band_cm2_s=None, fit_note=fit_note)
    dens = [d.get("number_density_cm3") for _, d in used]
    if fit is not None and sp and dens and all(v for v in dens):
        try:
            z = formal_charge(sp, charge)
        except FiremlipError as exc:
            z = None
            res["conductivity_note"] = str(exc)
        if z is not None:
            n = float(np.mean(dens))
            Dt, band = fit["diffusivity_target_cm2_s"], fit["diffusivity_target_band_cm2_s"]
            s_tr = nernst_einstein(n, z, Dt, target_T_K)
            res.update(charge_e=z, number_density_cm3=n, sigma_tracer_target_S_cm=s_tr,
                       sigma_tracer_target_band_S_cm=[nernst_einstein(n, z, v, target_T_K) for v in band])
            hs = [d["haven_ratio"] for _, d in used
                  if d.get("haven_ratio") and str(d.get("haven_source", "")).startswith("computed")]
            if hs:
                h = float(np.mean(hs))
                src = f"computed (mean of {len(hs)} runs)" if len(hs) > 1 else "computed (1 run)"
            elif haven is not None:
                h, src = float(haven), "assumed (user value)"
            else:
                h, src = None, "not available (charge MSD too noisy in every run; give --haven to assume one)"
            res.update(haven_ratio=h, haven_source=src)
            if h is not None:
                res.update(sigma_charge_target_S_cm=s_tr / h,
                           sigma_charge_target_band_S_cm=[v / h for v in res["sigma_tracer_target_band_S_cm"]])
    res.pop("_ln_sigma_target", None)
    ea_reasons = activation_energy_validity(res)
    if fit is None and fit_note and not any("diffusive temperature" in r for r in ea_reasons):
        ea_reasons.append(fit_note)
    reasons = ea_reasons + extrapolation_validity(res)
    # Ea can be quoted (with its error) while the extrapolation over a wide 1/T gap is still uninformative
    res["activation_energy_valid"] = not ea_reasons
    res["extrapolation_valid"] = not reasons
    res["extrapolation_indicative"] = extrapolation_indicative(res)
    res["valid"] = not reasons
    res["invalid_reasons"] = reasons
    res["units"] = {"activation_energy": "eV", "diffusivity": "cm^2/s", "temperature": "K", "sigma": "S/cm",
                    "band": f"{int(confidence * 100)}% confidence"}
    out = Path(out_dir)
    plot_arrhenius(res, sp, out / "arrhenius.png")
    res["plot"] = "arrhenius.png"
    write_result(out / "arrhenius.json", res)
    return res


def plot_arrhenius(fit: dict[str, Any], species: str | None, path: str | os.PathLike[str]) -> None:
    """log10 D vs 1000/T with error bars, the fit line and its confidence band down to the target T.

    Excluded temperatures (``fit['excluded']``) are drawn as open red symbols; an invalid result
    (``fit['invalid_reasons']``) is titled INVALID in red with its reasons.
    """
    plt = mpl()
    T = np.asarray(fit["temperatures_K"], float)
    D = np.asarray(fit["diffusivities_cm2_s"], float)
    Tt = fit["target_temperature_K"]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ln10 = np.log(10)
    if fit.get("activation_energy_eV") is not None and fit.get("covariance_lnD0_slope") is not None:
        grid = np.linspace(1000.0 / max(T.max(), Tt) * 0.95, 1000.0 / min(T.min(), Tt) * 1.02, 100)
        lnD, s = _ln_band(fit, 1000.0 / grid)
        z = fit["band_z"]
        ax.fill_between(grid, (lnD - z * s) / ln10, (lnD + z * s) / ln10, color="C0", alpha=0.2,
                        label=f"{int(fit['confidence'] * 100)}% band")
        ax.plot(grid, lnD / ln10, "C0-",
                label=f"Ea = {fit['activation_energy_eV']:.3f} ± {fit['activation_energy_err_eV']:.3f} eV")
        ax.plot([1000.0 / Tt], [np.log10(fit["diffusivity_target_cm2_s"])], "r*", ms=10,
                label=f"D({Tt:g} K) = {fit['diffusivity_target_cm2_s']:.2e} cm²/s")
    if T.size:
        yerr = None if fit.get("errors_cm2_s") is None else np.asarray(fit["errors_cm2_s"]) / D / ln10
        ax.errorbar(1000.0 / T, np.log10(D), yerr=yerr, fmt="ko", ms=4, label=f"{species or ''} MD")
    first = True
    for e in fit.get("excluded") or []:
        lab = "excluded (invalid run)" if first else None
        De = e.get("diffusivity_cm2_s")
        if De is not None and De > 0:
            ax.plot([1000.0 / e["temperature_K"]], [np.log10(De)], "rx", ms=7, label=lab)
        else:
            ax.axvline(1000.0 / e["temperature_K"], color="red", ls=":", lw=1, label=lab)
        first = False
    reasons = fit.get("invalid_reasons") or []
    if reasons:
        ax.set_title("INVALID", color="red")
        ax.text(0.02, 0.02, "\n".join(r[:80] for r in reasons), transform=ax.transAxes, fontsize=6, color="red")
    ax.set_xlabel("1000 / T (1/K)")
    ax.set_ylabel("log$_{10}$ D (cm²/s)")
    ax.legend(fontsize=7)
    save_figure(fig, path)
