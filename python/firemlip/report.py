"""Run report: ``report.md`` and ``report.html`` (plots embedded) from a run directory's stage outputs.

Everything in the report is read from the files the stages wrote (manifests, metrics, analysis JSON);
nothing is filled in by hand. Units: meV/atom, meV/Å, GPa, cm²/s, S/cm, eV, K, seconds.

Results that the analyses mark invalid (``valid: false`` with ``invalid_reasons``: a non-diffusive MSD, a
melted framework, too few temperatures, Ea ≤ 0, σ outside the physical range, …) are printed in red in the HTML
and flagged "INVALID" in the Markdown, never as plain numbers; analysis files written before those keys existed
are checked again here with the same functions.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

from firemlip.errors import FiremlipError
from firemlip.io import write_text_atomic


def _load(p: Path) -> Any:
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        if v == 0:
            return "0"
        if abs(v) >= 1e4 or abs(v) < 1e-2:
            return f"{v:.{digits}e}"
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _pm(v: Any, e: Any) -> str:
    return _fmt(v) if e is None else f"{_fmt(v)} ± {_fmt(e, 2)}"


class _Doc:
    """Builds the same content as Markdown and as HTML."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.md: list[str] = []
        self.html: list[str] = []

    def h(self, text: str, level: int = 2) -> None:
        self.md.append(f"\n{'#' * level} {text}\n")
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def p(self, text: str) -> None:
        self.md.append(text + "\n")
        self.html.append(f"<p>{html.escape(text)}</p>")

    def invalid(self, what: str, reasons: list[str]) -> None:
        """A red (HTML) / bold INVALID (Markdown) paragraph listing why ``what`` cannot be trusted."""
        text = f"INVALID {what}: " + "; ".join(reasons)
        self.md.append(f"**⚠ {text}**\n")
        self.html.append(f'<p class="invalid">⚠ {html.escape(text)}</p>')

    def table(self, header: list[str], rows: list[list[str]], invalid: list[bool] | None = None) -> None:
        """A table; rows whose ``invalid`` entry is True are red in HTML and marked ⚠ in Markdown."""
        if not rows:
            return
        bad = invalid or [False] * len(rows)
        self.md.append("| " + " | ".join(header) + " |")
        self.md.append("| " + " | ".join("---" for _ in header) + " |")
        for r, b in zip(rows, bad, strict=True):
            self.md.append("| " + " | ".join((f"⚠ {c}" if b and i == 0 else c) for i, c in enumerate(r)) + " |")
        self.md.append("")
        th = "".join(f"<th>{html.escape(c)}</th>" for c in header)
        trs = "".join(("<tr class=\"invalid\">" if b else "<tr>")
                      + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r, b in zip(rows, bad, strict=True))
        self.html.append(f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>")

    def img(self, path: Path, caption: str) -> None:
        if not path.exists():
            return
        rel = os.path.relpath(path, self.run_dir)
        self.md.append(f"![{caption}]({rel})\n")
        data = base64.b64encode(path.read_bytes()).decode()
        self.html.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _stage_dirs(run_dir: Path) -> dict[str, Path]:
    out = {}
    for d in sorted(run_dir.iterdir()):
        if d.is_dir() and len(d.name) > 3 and d.name[:2].isdigit() and d.name[2] == "_":
            out[d.name[3:]] = d
    return out


def build_report(run_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``run_dir``; return their paths."""
    rd = Path(run_dir)
    if not rd.is_dir():
        raise FiremlipError(f"{rd}: run directory not found")
    stages = _stage_dirs(rd)
    if not stages:
        raise FiremlipError(f"{rd}: no stage directories (NN_stage/) — is this a firemlip run directory?")
    doc = _Doc(rd)
    doc.h("firemlip run report", 1)
    doc.p(f"Run directory: {rd.resolve()}")
    _foundation(doc, stages)
    _rmse(doc, stages)
    _selection(doc, stages)
    _audit(doc, stages)
    _analysis(doc, stages)
    _timings(doc, stages)
    md_path, html_path = rd / "report.md", rd / "report.html"
    write_text_atomic(md_path, "\n".join(doc.md) + "\n")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;"
             "text-align:right}th{background:#eee}img{max-width:100%}figcaption{color:#555;font-size:90%}"
             ".invalid,tr.invalid td{color:#c00;font-weight:bold}")
    write_text_atomic(html_path, "<!DOCTYPE html><html><head><meta charset='utf-8'><title>firemlip report"
                      f"</title><style>{style}</style></head><body>" + "\n".join(doc.html) + "</body></html>\n")
    return md_path, html_path


def _foundation(doc: _Doc, stages: dict[str, Path]) -> None:
    d = stages.get("foundation")
    m = _load(d / "manifest.json") if d else None
    if not m:
        return
    doc.h("Foundation")
    f = m.get("foundation", {})
    info = m.get("model_info", {})
    doc.p(f"How it was obtained: {f.get('how', '?')}" + (f" (teacher {f['teacher']})" if f.get("teacher") else "")
          + (f", {f.get('name')}" if f.get("name") else ""))
    rows = [[k, _fmt(info.get(k))] for k in ("elements", "r_max_A", "channels", "L", "parameters", "dtype")
            if k in info]
    doc.table(["property", "value"], [[r[0], r[1] if not isinstance(info.get(r[0]), list)
                                       else ", ".join(map(str, info[r[0]]))] for r in rows])
    if f.get("heldout"):
        h = f["heldout"]
        doc.p(f"Student vs teacher on held-out distillation frames: energy RMSE "
              f"{_fmt(h.get('energy_rmse_meV_atom'))} meV/atom, force RMSE {_fmt(h.get('forces_rmse_meV_A'))} meV/Å.")
    doc.img(d / "distill_parity.png", "distilled foundation: student vs teacher")


def _rmse(doc: _Doc, stages: dict[str, Path]) -> None:
    d = stages.get("evaluate")
    comp = _load(d / "comparison.json") if d else None
    if not comp:
        return
    doc.h("Accuracy on held-out DFT frames")
    rows = []
    for name, row in comp.items():
        t = row.get("test", {})
        o = t.get("overall", t)
        fg = row.get("forgetting") or {}
        rows.append([name, _fmt(o.get("energy_rmse_meV_atom")), _fmt(o.get("forces_rmse_meV_A")),
                     _fmt(o.get("stress_rmse_GPa")), _fmt(fg.get("forgetting_ratio_forces", fg.get("forces_ratio"))),
                     _fmt(fg.get("deviation_from_foundation_forces_meV_A"))])
    doc.table(["model", "E RMSE (meV/atom)", "F RMSE (meV/Å)", "σ RMSE (GPa)", "forgetting ratio (F)",
               "replay deviation from foundation (F, meV/Å)"], rows)
    f = {r[0]: r for r in rows}
    try:
        fire = float(f["fire"][2])
        for b in ("vanilla", "scratch"):
            if b in f:
                other = float(f[b][2])
                doc.p(f"fire vs {b}: force RMSE {fire:.3g} vs {other:.3g} meV/Å "
                      f"({abs(100 * (other - fire) / other):.1f}% {'lower' if fire < other else 'higher'} for fire).")
    except (KeyError, ValueError):
        pass
    for name in comp:
        doc.img(d / name / "parity.png", f"parity: {name}")


def _selection(doc: _Doc, stages: dict[str, Path]) -> None:
    d = stages.get("select")
    if not d:
        return
    doc.h("Selection (SOAP → PCA → K-means)")
    for sub in sorted(d.glob("n*/")):
        m = _load(sub / "metrics.json") or {}
        rb = m.get("random_baseline") or {}
        doc.p(f"{sub.name[1:]} of {m.get('pool_frames', '?')} pool frames selected ({m.get('method', '?')}, "
              f"{m.get('pca_components', '?')} PCA components); coverage (mean PCA distance from a pool frame to "
              f"its nearest selected frame, lower is better): {_fmt(m.get('coverage_mean'))} vs "
              f"{_fmt(rb.get('coverage_mean'))} for a random selection of the same size")
        doc.img(sub / "pca.png", f"PCA map, {sub.name[1:]} selected")
    for lc in d.parent.rglob("learning_curve.png"):
        doc.img(lc, "learning curve")


def _audit(doc: _Doc, stages: dict[str, Path]) -> None:
    d = stages.get("audit")
    a = _load(d / "audit.json") if d else None
    if not a:
        return
    doc.h("Model audit")
    doc.p(f"Overall: {'PASS' if a.get('passed') else 'FAIL'}")
    gates = a.get("gates", {})
    doc.table(["gate", "status"], [[g, str(v.get("status", "?")) if isinstance(v, dict) else str(v)]
                                   for g, v in gates.items()])
    for p in sorted(d.glob("*.png")):
        doc.img(p, p.stem.replace("_", " "))


def _flag(text: str, invalid: bool) -> str:
    return f"{text} (INVALID)" if invalid and text != "–" else text


def _analysis(doc: _Doc, stages: dict[str, Path]) -> None:
    from firemlip.analysis.arrhenius import arrhenius_validity
    from firemlip.analysis.diffusion import diffusion_validity

    d = stages.get("analyze")
    if not d:
        return
    doc.h("Transport")
    rows, bad, notes = [], [], []
    melt: list[str | None] = []
    region: tuple[dict[str, Any], dict[str, Any]] | None = None
    outs = (_load(d / "manifest.json") or {}).get("outputs")
    current = sorted(d / Path(o).parent for o in outs if o.endswith("diffusion.json")) if outs else \
        sorted(d.glob("diffusion_*"))
    for sub in current:
        j = _load(sub / "diffusion.json") or {}
        c = j.get("conductivity") or {}
        reasons = list(j.get("invalid_reasons") or []) if "valid" in j else diffusion_validity(j)
        inv = bool(reasons) or j.get("valid") is False
        rows.append([_fmt(j.get("temperature_K")),
                     _flag(_pm(j.get("diffusivity_cm2_s"), j.get("diffusivity_err_cm2_s")), inv),
                     _fmt(j.get("loglog_exponent")),
                     _flag(_pm(c.get("haven_ratio", j.get("haven_ratio")),
                               c.get("haven_ratio_err", j.get("haven_ratio_err"))), inv),
                     str(c.get("haven_source", j.get("haven_source", "–"))),
                     _flag(_pm(c.get("sigma_tracer_S_cm"), c.get("sigma_tracer_err_S_cm")), inv),
                     _flag(_pm(c.get("sigma_charge_S_cm"), c.get("sigma_charge_err_S_cm")), inv),
                     str(j.get("drift_correction", "–")),
                     "no: " + "; ".join(reasons) if inv else "yes"])
        bad.append(inv)
        checks = []
        for key in ("structure_check", "structure_check_outside"):
            sc = j.get(key) or {}
            if sc.get("checked"):
                state = "melted" if sc.get("melted") else "collapsed" if sc.get("collapsed") else "solid"
                checks.append(f"{sc.get('sublattice', 'framework')}: {state}")
        melt.append(f"{_fmt(j.get('temperature_K'))} K: " + "; ".join(checks) if checks else None)
        if j.get("region") and region is None:
            region = (j["region"], j)
        if j.get("haven_required_duration_ps") is not None and j.get("haven_note"):
            notes.append(f"{_fmt(j.get('temperature_K'))} K: Haven ratio not computed — {j['haven_note']}")
    if region is not None:
        r, j = region
        doc.p(f"Mobile ions: the {j.get('n_ions', '?')} {j.get('species', '')} atoms initially in region "
              f"`{r.get('spec')}` (of {r.get('n_atoms', '?')} atoms there; positions from the "
              f"{r.get('positions_from', '?')}); σ uses their number density in the region's volume "
              f"({_fmt(j.get('number_density_cm3'))} cm⁻³; {r.get('volume_method', '')}).")
    doc.table(["T (K)", "D* (cm²/s)", "MSD log-log slope", "Haven ratio H_R", "H_R source", "σ tracer (S/cm)",
               "σ charge (S/cm)", "drift reference", "valid"], rows, bad)
    if any(melt):
        doc.p("Melt/collapse check of the final frames (pyscal3 bond order vs the starting structure): "
              + " | ".join(m for m in melt if m))
    for n in notes:
        doc.p(n)
    for sub in current:
        doc.img(sub / "msd.png", f"MSD {sub.name}")
    a = _load(d / "arrhenius" / "arrhenius.json")
    note = (_load(d / "manifest.json") or {}).get("arrhenius")
    if note and not a:
        doc.p(f"Arrhenius: {note}")
    if a:
        reasons = list(a.get("invalid_reasons") or []) if "valid" in a else arrhenius_validity(a)
        inv = bool(reasons) or a.get("valid") is False
        # Ea with its error bar can stand while the extrapolation to Tt is flagged (activation_energy_valid)
        inv_ea = inv and not a.get("activation_energy_valid", False)
        Tt = _fmt(a.get("target_temperature_K"))
        doc.h("Arrhenius fit and extrapolation", 3)
        if inv:
            doc.invalid("Arrhenius fit / extrapolation", reasons or ["marked invalid"])
        used = ", ".join(_fmt(t) for t in a.get("temperatures_K") or [])
        doc.table(["temperatures fitted (K)", "excluded", "Ea (eV)", f"D({Tt} K) (cm²/s)",
                   f"σ tracer({Tt} K) (S/cm, band)", f"σ charge({Tt} K) (S/cm, band)", "Haven ratio H_R",
                   "H_R source", "valid"],
                  [[used or "–", str(a.get("n_excluded", 0)),
                    _flag(_pm(a.get("activation_energy_eV"), a.get("activation_energy_err_eV")), inv_ea),
                    _flag(_pm(a.get("diffusivity_target_cm2_s"), a.get("diffusivity_target_err_cm2_s")), inv),
                    _sigma_cell(a, "sigma_tracer_target", inv), _sigma_cell(a, "sigma_charge_target", inv),
                    _fmt(a.get("haven_ratio")), str(a.get("haven_source", "–")), "no" if inv else "yes"]], [inv])
        ex = a.get("excluded") or []
        if ex:
            doc.table(["excluded T (K)", "reason"], [[_fmt(e.get("temperature_K")), "; ".join(e.get("reasons", []))]
                                                     for e in ex], [True] * len(ex))
        for p in sorted((d / "arrhenius").glob("*.png")):
            doc.img(p, "Arrhenius plot")
    e = _load(d / "elastic" / "elastic.json")
    if e:
        _elastic(doc, e, d / "elastic")


def _sigma_cell(a: dict[str, Any], key: str, invalid: bool) -> str:
    """An extrapolated σ (S/cm) with its band, marked INDICATIVE (``extrapolation_indicative``: a too-wide band of
    physical values) or INVALID."""
    v, band = a.get(f"{key}_S_cm"), a.get(f"{key}_band_S_cm")
    text = _fmt(v) + (f" ({_fmt(band[0])}–{_fmt(band[1])})" if v is not None and band else "")
    if invalid and a.get("extrapolation_indicative") and v is not None:
        return f"{text} (INDICATIVE: band too wide)"
    return _flag(text, invalid)


def _elastic(doc: _Doc, e: dict[str, Any], d: Path) -> None:
    doc.h("Elastic constants")
    if e.get("method"):
        doc.p(f"Method: {e['method']}" + (f"; temperature {_fmt(e['temperature_K'])} K"
                                          if e.get("temperature_K") is not None else "")
              + (f"; calculator {e['calculator']}" if e.get("calculator") else ""))
    stable = e.get("born_stable")
    if stable is False:
        doc.invalid("elastic moduli", [str(e.get("note_stability") or "not Born-stable")])
    C = e.get("C_GPa") or e.get("C_ij_GPa")
    if isinstance(C, list):
        doc.table(["C_ij (GPa)", *[str(i + 1) for i in range(6)]],
                  [[str(i + 1), *[_fmt(x) for x in r]] for i, r in enumerate(C)])
    props = e.get("properties", e)
    rows = []
    for avg in ("hill", "voigt", "reuss"):
        if f"B_{avg}_GPa" in props:
            rows.append([avg.capitalize() + (" (average)" if avg == "hill" else " (bound)"),
                         _fmt(props.get(f"B_{avg}_GPa")), _fmt(props.get(f"G_{avg}_GPa")),
                         _fmt(props.get(f"E_{avg}_GPa")), _fmt(props.get(f"poisson_{avg}"))])
    doc.table(["polycrystal estimate", "bulk modulus B (GPa)", "shear modulus G (GPa)", "Young's modulus E (GPa)",
               "Poisson's ratio ν (dimensionless)"], rows, [stable is False] * len(rows))
    extra = [[_fmt(props.get("born_stable")), _fmt(props.get("universal_anisotropy")),
              _fmt(props.get("zener_anisotropy"))]] if "born_stable" in props else []
    doc.table(["Born-stable", "universal anisotropy A_U (dimensionless)", "Zener ratio A (dimensionless)"], extra,
              [stable is False] * len(extra))
    for p in sorted(d.glob("*.png")):
        doc.img(p, "elastic constants")


def _timings(doc: _Doc, stages: dict[str, Path]) -> None:
    doc.h("Stages, timings and provenance")
    rows, versions, inputs = [], {}, []
    for name, d in stages.items():
        m = _load(d / "manifest.json") or {}
        rows.append([name, str(m.get("status", "?")), _fmt(m.get("wall_time_s")), m.get("started", "–")])
        versions.update(m.get("versions", {}))
        for role, v in (m.get("inputs") or {}).items():
            inputs.append([name, role, os.path.basename(v.get("path", "")), v.get("sha256", "")[:16]])
    doc.table(["stage", "status", "wall time (s)", "started"], rows)
    doc.table(["package", "version"], [[k, str(v)] for k, v in sorted(versions.items())])
    doc.table(["stage", "input", "file", "sha256 (first 16)"], inputs)
