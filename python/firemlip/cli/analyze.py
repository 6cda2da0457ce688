"""``firemlip analyze diffusion|arrhenius|conductivity|impedance|elastic|scaling|structure``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from firemlip.options import ArrheniusOptions, DiffusionOptions, add_options, options_from_args


def _print(res: dict[str, Any], keys: tuple[str, ...]) -> None:
    print(json.dumps({k: res.get(k) for k in keys if k in res}, indent=1, default=str))


def _warn_invalid(res: dict[str, Any], what: str) -> None:
    """One stderr line per reason when a result is marked invalid (the JSON holds the same)."""
    import sys

    if res.get("valid") is False:
        for r in res.get("invalid_reasons") or []:
            sys.stderr.write(f"firemlip: INVALID {what}: {r}\n")


def _diffusion(args: argparse.Namespace) -> int:
    from firemlip.analysis.diffusion import analyze_diffusion

    opts = options_from_args(DiffusionOptions, args, args.parser)
    res = analyze_diffusion(args.dumps, args.species, args.temperature, args.timestep_fs, args.out,
                            elements=args.elements, window_fs=tuple(args.window_fs) if args.window_fs else None,
                            charge=args.charge, haven=args.haven, reference=args.reference,
                            check_structure=not args.no_structure_check, region=args.region, **opts.model_dump())
    _print(res, ("species", "temperature_K", "drift_correction", "diffusivity_cm2_s", "diffusivity_err_cm2_s",
                 "fit_window_fs", "loglog_exponent", "diffusive", "charge_diffusivity_cm2_s",
                 "charge_diffusivity_err_cm2_s", "haven_ratio", "haven_ratio_err", "haven_source",
                 "haven_required_duration_ps", "warning", "region", "outside_note", "valid", "invalid_reasons"))
    if res.get("conductivity"):
        c = res["conductivity"]
        _print(c, ("sigma_tracer_S_cm", "sigma_tracer_err_S_cm", "sigma_charge_S_cm", "sigma_charge_err_S_cm"))
    _warn_invalid(res, f"diffusion at {res['temperature_K']:g} K")
    return 0


def _arrhenius(args: argparse.Namespace) -> int:
    from firemlip.analysis.arrhenius import analyze_arrhenius

    opts = options_from_args(ArrheniusOptions, args, args.parser)
    res = analyze_arrhenius(args.results, args.out, haven=args.haven, charge=args.charge, **opts.model_dump())
    _print(res, ("species", "activation_energy_eV", "activation_energy_err_eV", "target_temperature_K",
                 "diffusivity_target_cm2_s", "diffusivity_target_band_cm2_s", "sigma_tracer_target_S_cm",
                 "sigma_charge_target_S_cm", "haven_source", "n_excluded", "valid", "invalid_reasons"))
    _warn_invalid(res, "Arrhenius fit")
    return 0


def _conductivity(args: argparse.Namespace) -> int:
    from firemlip.analysis.conductivity import analyze_conductivity

    res = analyze_conductivity(args.diffusion_json, args.out, charge=args.charge, haven=args.haven,
                               measured=args.measured)
    _print(res, ("species", "temperature_K", "sigma_tracer_S_cm", "sigma_tracer_err_S_cm", "sigma_charge_S_cm",
                 "sigma_charge_err_S_cm", "haven_ratio", "haven_source", "valid", "invalid_reasons"))
    _warn_invalid(res, "conductivity")
    return 0


def _impedance(args: argparse.Namespace) -> int:
    from firemlip.analysis.impedance import analyze_impedance

    res = analyze_impedance(args.data, args.thickness_cm, args.area_cm2, args.out, circuit=args.circuit,
                            resistance=args.resistance, temperature_K=args.temperature,
                            simulated=args.simulated or (), initial_guess=args.initial_guess)
    _print(res, ("circuit", "resistance_ohm", "resistance_err_ohm", "sigma_S_cm", "sigma_err_S_cm",
                 "relative_rms_residual"))
    return 0


def _elastic(args: argparse.Namespace) -> int:
    from firemlip.errors import FiremlipError

    keys = ("temperature_K", "C11_GPa", "C12_GPa", "C44_GPa", "born_stable", "symmetric", "B_hill_GPa",
            "G_hill_GPa", "E_hill_GPa", "poisson_hill", "universal_anisotropy", "note_anisotropy")
    if args.structure:
        if not args.model:
            raise FiremlipError("analyze elastic --structure needs --model (a MACE .model file or any labeller "
                                "spec: emt, lj, mace:PATH, python:module:function, ...)")
        from firemlip.analysis.elastic import analyze_elastic_ase, calculator_from_spec
        from firemlip.io import read_frames

        atoms = read_frames(args.structure, index=0, what="structure")[0]
        calc, spec = calculator_from_spec(args.model, dict(args.set or []), atoms, device=args.device)
        res = analyze_elastic_ase(atoms, calc, args.out, strain=args.strain, fmax=args.fmax, calculator=spec)
    else:
        if not args.run_dir:
            raise FiremlipError("analyze elastic needs a LAMMPS run directory (or --structure with --model)")
        from firemlip.analysis.elastic import analyze_elastic

        res = analyze_elastic(args.run_dir, args.out)
    _print(res, keys)
    return 0


def _scaling(args: argparse.Namespace) -> int:
    from firemlip.analysis.scaling import analyze_scaling

    res = analyze_scaling(args.inputs, args.out, label=args.label)
    for r in res["runs"]:
        print(f"{r['atoms']:8d} atoms  {r['ms_per_step']:10.3f} ms/step  {r['us_per_atom_step']:10.3f} µs/atom/step")
    if res.get("exponent") is not None:
        print(f"ms/step ∝ atoms^{res['exponent']:.2f}")
    return 0


def _structure(args: argparse.Namespace) -> int:
    from firemlip.analysis.structure import analyze_structure

    tol = {k: v for k, v in (("cn_tolerance", args.cn_tolerance), ("q6_drop", args.q6_drop)) if v is not None}
    res = analyze_structure(args.frames, args.reference, args.out, cutoff_A=args.cutoff, every=args.every, **tol)
    print(f"{res['n_flagged']} of {res['n_frames']} frames flagged: {res['flagged_frames'][:20]}")
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``firemlip analyze <kind>`` with nested sub-commands."""
    from firemlip.cli import OneLineParser, key_value, nonneg_float, positive_int

    p = subparsers.add_parser("analyze", help="analyse LAMMPS runs and measurements (D, Ea, σ, C_ij, scaling, …)",
                              description="Analyses; each writes <name>.json (units, uncertainties) and a PNG.")
    sub = p.add_subparsers(dest="analysis", metavar="ANALYSIS", parser_class=OneLineParser)
    p.set_defaults(func=lambda a: (p.print_help(), 0)[1])

    def pos_float(text: str) -> float:
        v = nonneg_float(text)
        if v == 0:
            raise argparse.ArgumentTypeError("expected a positive number, got 0")
        return v

    d = sub.add_parser("diffusion", help="MSD (FFT) → D* and D_σ (cm²/s), Haven ratio, σ (S/cm)")
    d.add_argument("dumps", nargs="+", help="LAMMPS text dump(s) with id, type/element and xu yu zu")
    d.add_argument("--species", required=True, help="the mobile element, e.g. Li")
    d.add_argument("--temperature", type=pos_float, required=True, help="run temperature (K)")
    d.add_argument("--timestep-fs", type=pos_float, required=True, help="MD time step (fs)")
    d.add_argument("-o", "--out", default="analysis_diffusion", help="output directory")
    d.add_argument("--elements", nargs="+", help="symbols of LAMMPS types 1, 2, … when the dump lacks 'element'")
    d.add_argument("--window-fs", type=nonneg_float, nargs=2, metavar=("T0", "T1"), help="fixed fit window (fs)")
    add_options(d, DiffusionOptions)
    d.add_argument("--charge", type=float, help="ion charge in e (default: formal charge of the species)")
    d.add_argument("--haven", type=pos_float, help="Haven ratio to assume when the charge MSD is too noisy "
                                                   "(reported as 'assumed (user value)')")
    d.add_argument("--reference", help="structure file of the starting crystal for the melting check of the final "
                                       "frames (default: the first frame)")
    d.add_argument("--region", help="analyse only the mobile atoms initially in a region of the --reference "
                                    "structure: substrate or film (a slab of a `firemlip interface` structure), "
                                    "z:LO:HI (Å along the stacking axis) or zf:LO:HI (fractions); σ then uses the "
                                    "region's volume and the melting check its framework")
    d.add_argument("--no-structure-check", action="store_true",
                   help="skip the pyscal3 melting/collapse check of the final frames")
    d.set_defaults(func=_diffusion, parser=d)

    a = sub.add_parser("arrhenius", help="ln D vs 1/T → Ea (eV), D and σ at a target T with a band")
    a.add_argument("results", nargs="+", help="diffusion.json files at different temperatures")
    a.add_argument("-o", "--out", default="analysis_arrhenius")
    add_options(a, ArrheniusOptions)
    a.add_argument("--haven", type=pos_float, help="Haven ratio to assume when none was computed")
    a.add_argument("--charge", type=float, help="ion charge in e")
    a.set_defaults(func=_arrhenius, parser=a)

    c = sub.add_parser("conductivity", help="Nernst–Einstein σ (S/cm), tracer- and charge-based")
    c.add_argument("diffusion_json")
    c.add_argument("-o", "--out", default="analysis_conductivity")
    c.add_argument("--charge", type=float, help="ion charge in e")
    c.add_argument("--haven", type=pos_float, help="Haven ratio to assume when none was computed")
    c.add_argument("--measured", nargs="+", help="impedance.json files to compare with")
    c.set_defaults(func=_conductivity)

    i = sub.add_parser("impedance", help="equivalent-circuit fit of measured impedance → σ (S/cm), Nyquist plot")
    i.add_argument("data", help="CSV/text: frequency_Hz, Z_real_ohm, Z_imag_ohm")
    i.add_argument("--thickness-cm", type=pos_float, required=True, help="pellet thickness (cm)")
    i.add_argument("--area-cm2", type=pos_float, required=True, help="electrode area (cm²)")
    i.add_argument("-o", "--out", default="analysis_impedance")
    i.add_argument("--circuit", default="R0-p(R1,CPE1)-CPE2")
    i.add_argument("--resistance", default="R0+R1", help="'+'-joined circuit resistances that make the ionic R")
    i.add_argument("--temperature", type=pos_float, help="measurement temperature (K)")
    i.add_argument("--simulated", nargs="+", help="conductivity.json / arrhenius.json to tabulate beside")
    i.add_argument("--initial-guess", type=float, nargs="+", help="circuit parameters' initial values")
    i.set_defaults(func=_impedance)

    e = sub.add_parser("elastic", help="C_ij (GPa), Born stability, VRH moduli, E, ν")
    e.add_argument("run_dir", nargs="?", help="LAMMPS run directory of templates/elastic.in.j2")
    e.add_argument("-o", "--out", default="analysis_elastic")
    e.add_argument("--structure", help="ASE path: relaxed structure file (no LAMMPS needed)")
    e.add_argument("--model", help="ASE path: the calculator: a MACE .model file or any labeller spec that "
                                   "`firemlip label --calculator` accepts (emt, lj, mace:PATH, "
                                   "python:module:function, gpaw, ...)")
    e.add_argument("--set", action="append", type=key_value, metavar="KEY=VALUE",
                   help="ASE path: calculator setting (repeatable), as for `firemlip label`")
    e.add_argument("--strain", type=pos_float, default=1e-3, help="ASE path: strain amplitude")
    e.add_argument("--fmax", type=pos_float, default=1e-4, help="ASE path: ionic relaxation force limit (eV/Å)")
    e.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="ASE path: device of a MACE model")
    e.set_defaults(func=_elastic)

    s = sub.add_parser("scaling", help="ms/step and µs/atom/step vs atoms, log–log plot")
    s.add_argument("inputs", nargs="+", help="run directories, LAMMPS logs, or JSON/CSV timing tables")
    s.add_argument("-o", "--out", default="analysis_scaling")
    s.add_argument("--label", help="legend label (e.g. the device)")
    s.set_defaults(func=_scaling)

    t = sub.add_parser("structure", help="coordination and q4/q6 vs a reference; flag collapsed/melted frames")
    t.add_argument("frames", help="frames file (extxyz, LAMMPS dump, …)")
    t.add_argument("--reference", required=True, help="reference structure file")
    t.add_argument("-o", "--out", default="analysis_structure")
    t.add_argument("--cutoff", type=pos_float, help="neighbour cut-off (Å; default 1.2 × shortest distance)")
    t.add_argument("--every", type=positive_int, default=1, help="check every n-th frame")
    t.add_argument("--cn-tolerance", type=pos_float, help="relative coordination change flagged (default 0.25)")
    t.add_argument("--q6-drop", type=pos_float, help="relative q6 drop flagged as melted (default 0.3)")
    t.set_defaults(func=_structure)
