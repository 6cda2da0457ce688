"""``firemlip demo``: the FIRE pipeline on the bundled Li metal | Li3N example.

The example (``examples/li_li3n/``: Li(100) on Li3N(11-20), 55 atoms, one Li(2) vacancy in the Li3N) ships its
reference data (GPAW PBE labels made by ``firemlip label``, as a label cache, and an offline foundation distilled
from SevenNet-0) under ``examples/li_li3n/data/``, so the demo runs no DFT unless ``--relabel``. Its transport
section is Li diffusion in the Li3N slab (``analyze: region: substrate``) at temperatures where both the metal and
the electrolyte stay solid; the demo ends with a summary of it (:func:`transport_summary`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from firemlip.errors import FiremlipError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "li_li3n"
#: What experiment says about the example's electrolyte, printed after the transport summary for comparison.
LITERATURE = ("experiment, Li3N perpendicular to c: Ea ≈ 0.29 eV, σ(300 K) = 1.2e-3 S/cm "
              "(U. v. Alpen et al., Appl. Phys. Lett. 30, 621 (1977)); see examples/li_li3n/README.md")


def run_demo(run_dir: str | Path = "runs/demo", quick: bool = True, relabel: bool = False,
             example: Path = EXAMPLE, foundation: str | None = None, md_steps: int | None = None) -> dict:
    """Run the example's config into ``run_dir``; seeds the label cache from the bundled data.

    ``md_steps``: production MD steps per diffusion temperature instead of the profile's (a smoke run of the whole
    pipeline; the transport summary then says "not converged" unless the analysis accepts the result).
    """
    from firemlip.config import load_config
    from firemlip.workflow.run import run

    cfg_path = example / "config.yaml"
    if not cfg_path.exists():
        raise FiremlipError(f"{cfg_path}: the bundled example is missing (is this a full checkout?)")
    cfg = load_config(cfg_path)
    rd = Path(run_dir).resolve()
    rd.mkdir(parents=True, exist_ok=True)
    bundled = example / "data" / "label-cache"
    if not relabel and bundled.is_dir():
        cache = rd / "label-cache"
        cache.mkdir(exist_ok=True)
        for f in bundled.glob("*.extxyz"):
            if not (cache / f.name).exists():
                shutil.copy2(f, cache / f.name)
    if relabel and cfg.stages.label_selected is not None:
        cfg.stages.label_selected.data = None  # label this run's own selection with the labeller
    if quick:
        _quick(cfg)
    if md_steps is not None and cfg.stages.md is not None and cfg.stages.md.diffusion is not None:
        if md_steps <= 0:
            raise FiremlipError(f"md_steps: expected a positive number of MD steps, got {md_steps}")
        cfg.stages.md.diffusion.steps = int(md_steps)
        cfg.stages.md.diffusion.equil_steps = min(cfg.stages.md.diffusion.equil_steps, int(md_steps) // 10 or 1)
    want = foundation or (None if quick else "mace-mp-0-small")
    if want:
        _use_foundation(cfg, want, fallback=foundation is None)
    print(f"firemlip demo: {'quick' if quick else 'default'} profile, run directory {rd}")
    print("firemlip demo: expected time on 2 CPU cores: " + ("~8 minutes" if quick else
          "~15 minutes with the bundled foundation, hours with MACE-MP-0 (fine-tune it on a GPU)") +
          (" plus GPAW labelling (minutes per frame)" if relabel else ""))
    if relabel:
        print("firemlip demo: --relabel given: every frame is labelled with GPAW (minutes per frame)")
    return run(cfg, rd)


def _use_foundation(cfg, name: str, fallback: bool) -> None:
    """Start from ``name`` (a MACE-MP-0 family name or a .model path) with pseudo-label replay.

    The default profile asks for MACE-MP-0 small; without network (``fallback``) it keeps the bundled offline
    foundation distilled from SevenNet-0 and says so.
    """
    from firemlip.foundation import resolve_foundation

    try:
        path = resolve_foundation(name)
    except FiremlipError as exc:
        if not fallback:
            raise
        print(f"firemlip demo: {name} not available ({str(exc).split(';')[0]}); using the bundled offline "
              f"foundation distilled from SevenNet-0")
        return
    print(f"firemlip demo: foundation {name} ({path}); replay = pseudo-labels of the foundation")
    cfg.foundation.model = str(path)
    for st in (cfg.stages.prefit, cfg.stages.finetune):
        if st is not None:
            st.replay = None  # no MPtrj here: the foundation labels related structures itself


#: The quick profile's caps: training epochs, sampling steps, and per-temperature diffusion MD (production and
#: equilibration steps). Its transport numbers are a preview: the summary says "not converged" when the
#: analysis marks them invalid (non-diffusive MSD, a collapsed framework, fewer than three temperatures …).
QUICK = {"prefit_epochs": 8, "sample_steps": 600, "finetune_epochs": 25, "diffusion_steps": 12500,
         "diffusion_equil_steps": 500}


def _quick(cfg) -> None:
    """Shorter MD and training for the quick profile (same stages, same data, same temperatures)."""
    st = cfg.stages
    if st.prefit is not None:
        st.prefit.epochs = min(st.prefit.epochs, QUICK["prefit_epochs"])
    if st.sample is not None:
        st.sample.steps = min(st.sample.steps, QUICK["sample_steps"])
    if st.finetune is not None:
        st.finetune.epochs = min(st.finetune.epochs, QUICK["finetune_epochs"])
    if st.md is not None and st.md.diffusion is not None:
        st.md.diffusion.steps = min(st.md.diffusion.steps, QUICK["diffusion_steps"])
        st.md.diffusion.equil_steps = min(st.md.diffusion.equil_steps, QUICK["diffusion_equil_steps"])


def transport_summary(run_dir: str | Path, quick: bool = True) -> list[str]:
    """Lines summarising the run's transport results (``*_analyze``): D* per temperature with its validity and the
    melt checks, then Ea with its error and σ(300 K) with its band — or a "not converged" line with the reasons for
    each of them that the analysis marked invalid (``activation_energy_valid``, ``valid``). Never prints an Ea or
    σ that the analysis marked invalid, except a σ whose band is too wide but physical everywhere
    (``extrapolation_indicative``): it is printed with its band, marked INDICATIVE ONLY and the reason."""
    import json

    rd = Path(run_dir)
    an = next(iter(sorted(rd.glob("*_analyze"))), None)
    if an is None or not (an / "manifest.json").exists():
        return ["transport: no analysis in this run"]
    lines = []
    rows = sorted((json.loads(f.read_text()) for f in an.glob("diffusion_*K/diffusion.json")),
                  key=lambda d: d["temperature_K"])
    if rows:
        reg = rows[0].get("region") or {}
        where = f"{rows[0]['species']} initially in the {reg['spec']} region" if reg else f"all {rows[0]['species']}"
        lines.append(f"transport ({where}):")
    for d in rows:
        state = []
        for key in ("structure_check", "structure_check_outside"):
            sc = d.get(key) or {}
            if sc.get("checked"):  # outside the region: information only (e.g. the Li metal, liquid above 454 K)
                melted = ("liquid" if sc.get("melted_by") else "melted") if key.endswith("outside") else "MELTED"
                state.append(f"{sc.get('sublattice', 'structure').split(' (')[0]} "
                             f"{melted if sc.get('melted') else 'solid'}")
        o = d.get("outside") or {}
        if o.get("diffusivity_cm2_s") is not None:
            state.append(f"{d['species']} outside the region: D* = {o['diffusivity_cm2_s']:.2g} cm²/s"
                         + (", diffusive" if o.get("diffusive") else ""))
        ok = "" if d.get("valid") else "  INVALID: " + "; ".join(d.get("invalid_reasons") or [])
        lines.append(f"  {d['temperature_K']:g} K: D* = {d['diffusivity_cm2_s']:.3g} ± "
                     f"{d['diffusivity_err_cm2_s']:.2g} cm²/s, log-log slope {d['loglog_exponent']:.2f}"
                     + (f" ({', '.join(state)})" if state else "") + ok)
    arr_f = an / "arrhenius" / "arrhenius.json"
    if not arr_f.exists():
        return lines + ["  Ea, σ(300 K): not computed (fewer than two temperatures)"]
    arr = json.loads(arr_f.read_text())
    hint = ("run the default profile (`firemlip demo`, longer MD) for a converged value" if quick else
            "run longer MD (stages.md.diffusion.steps) or more temperatures")
    not_converged = "NOT CONVERGED — " + "; ".join(arr.get("invalid_reasons") or []) + f"; {hint}"
    if not arr.get("activation_energy_valid", arr.get("valid")):
        return lines + [f"  Ea, σ(300 K): {not_converged}"]
    Tt = arr.get("target_temperature_K", 300.0)
    Ts = arr.get("temperatures_K") or []
    lines.append(f"  Ea = {arr['activation_energy_eV']:.3f} ± {arr['activation_energy_err_eV']:.3f} eV (1σ; fit over "
                 f"{arr['n_temperatures']} temperatures" + (f", {min(Ts):g}–{max(Ts):g} K)" if Ts else ")"))
    # a valid extrapolation is a result; an indicative one (every value of its too-wide band physical) is shown as
    # an order of magnitude with its band and the reason; anything else is not shown
    shown = arr.get("valid") or arr.get("extrapolation_indicative")
    flag = "" if arr.get("valid") else (" — INDICATIVE ONLY: " + "; ".join(arr.get("invalid_reasons") or [])
                                        + f"; {hint}")
    if not shown:
        lines.append(f"  σ({Tt:g} K): {not_converged}")
    elif arr.get("sigma_tracer_target_S_cm") is not None:
        lo, hi = arr["sigma_tracer_target_band_S_cm"]
        lines.append(f"  σ({Tt:g} K), tracer (H_R = 1) = {arr['sigma_tracer_target_S_cm']:.2g} S/cm "
                     f"({arr['units']['band']} band {lo:.2g}–{hi:.2g})" + flag)
    h = arr.get("haven_ratio")
    if h is not None and shown and arr.get("sigma_charge_target_S_cm") is not None:
        lo, hi = arr["sigma_charge_target_band_S_cm"]
        lines.append(f"  σ({Tt:g} K) with Haven ratio {h:.2f} ({arr.get('haven_source')}) = "
                     f"{arr['sigma_charge_target_S_cm']:.2g} S/cm (band {lo:.2g}–{hi:.2g})"
                     + (" — indicative only" if flag else ""))
    elif h is not None:
        lines.append(f"  Haven ratio H_R = {h:.2f} ({arr.get('haven_source')})")
    else:
        lines.append(f"  Haven ratio: {arr.get('haven_source', 'not available')}")
    return lines
