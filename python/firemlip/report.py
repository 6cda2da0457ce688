"""Run report: ``report.md`` and ``report.html`` (plots embedded) from a run directory's stage outputs.

Everything in the report is read from the files the stages wrote (manifests, metrics, analysis JSON);
nothing is filled in by hand. Units: meV/atom, meV/Å, GPa, cm²/s, S/cm, eV, seconds.
"""

from __future__ import annotations

import argparse
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

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        if not rows:
            return
        self.md.append("| " + " | ".join(header) + " |")
        self.md.append("| " + " | ".join("---" for _ in header) + " |")
        for r in rows:
            self.md.append("| " + " | ".join(r) + " |")
        self.md.append("")
        th = "".join(f"<th>{html.escape(c)}</th>" for c in header)
        trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
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
             "text-align:right}th{background:#eee}img{max-width:100%}figcaption{color:#555;font-size:90%}")
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


def _analysis(doc: _Doc, stages: dict[str, Path]) -> None:
    d = stages.get("analyze")
    if not d:
        return
    doc.h("Transport")
    rows = []
    outs = (_load(d / "manifest.json") or {}).get("outputs")
    current = sorted(d / Path(o).parent for o in outs if o.endswith("diffusion.json")) if outs else \
        sorted(d.glob("diffusion_*"))
    for sub in current:
        j = _load(sub / "diffusion.json") or {}
        c = j.get("conductivity") or {}
        rows.append([_fmt(j.get("temperature_K")), _pm(j.get("diffusivity_cm2_s"), j.get("diffusivity_err_cm2_s")),
                     _pm(c.get("haven_ratio", j.get("haven_ratio")), c.get("haven_ratio_err")),
                     str(c.get("haven_source", j.get("haven_source", "–"))),
                     _pm(c.get("sigma_tracer_S_cm"), c.get("sigma_tracer_err_S_cm")),
                     _pm(c.get("sigma_charge_S_cm"), c.get("sigma_charge_err_S_cm"))])
    doc.table(["T (K)", "D* (cm²/s)", "Haven ratio", "H_R source", "σ tracer (S/cm)", "σ charge (S/cm)"], rows)
    for sub in current:
        doc.img(sub / "msd.png", f"MSD {sub.name}")
    a = _load(d / "arrhenius" / "arrhenius.json")
    note = (_load(d / "manifest.json") or {}).get("arrhenius")
    if note:
        doc.p(f"Arrhenius: {note}")
    if a:
        doc.p(f"Arrhenius over {a.get('n_temperatures', '?')} temperatures: Ea = "
              f"{_pm(a.get('activation_energy_eV'), a.get('activation_energy_err_eV'))} eV; extrapolated to "
              f"{_fmt(a.get('target_temperature_K'))} K: D = "
              f"{_pm(a.get('diffusivity_target_cm2_s'), a.get('diffusivity_target_err_cm2_s'))} cm²/s, "
              f"σ (tracer, Haven ratio {_fmt(a.get('haven_ratio'))}, {a.get('haven_source', '?')}) = "
              f"{_fmt(a.get('sigma_tracer_target_S_cm'))} S/cm")
        for p in sorted((d / "arrhenius").glob("*.png")):
            doc.img(p, "Arrhenius plot")
    e = _load(d / "elastic" / "elastic.json")
    if e:
        doc.h("Elastic constants")
        C = e.get("C_GPa") or e.get("C_ij_GPa")
        if isinstance(C, list):
            doc.table(["C (GPa)", *[str(i + 1) for i in range(6)]],
                      [[str(i + 1), *[_fmt(x) for x in r]] for i, r in enumerate(C)])
        props = e.get("properties", e)
        keys = [k for k in ("B_hill_GPa", "G_hill_GPa", "E_hill_GPa", "poisson_hill", "born_stable",
                            "universal_anisotropy") if k in props]
        doc.table(["quantity", "value"], [[k, _fmt(props[k])] for k in keys])
        for p in sorted((d / "elastic").glob("*.png")):
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


def _cmd_report(args: argparse.Namespace) -> int:
    md, ht = build_report(args.run_dir)
    print(f"wrote {md} and {ht}")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write report.md and report.html for a run directory")
    p.add_argument("run_dir")
    p.set_defaults(func=_cmd_report)
