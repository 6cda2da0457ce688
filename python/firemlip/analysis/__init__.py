"""Analysis of LAMMPS runs and measurements: diffusion, Arrhenius, conductivity (Haven ratio), impedance,
elastic constants, scaling and local-structure checks.

Python entry points (each writes ``<name>.json`` with units and uncertainties plus a PNG in ``out_dir``):

* :func:`firemlip.analysis.diffusion.analyze_diffusion` — D* (cm²/s), D_σ, H_R, σ from LAMMPS dumps
* :func:`firemlip.analysis.arrhenius.analyze_arrhenius` / :func:`~firemlip.analysis.arrhenius.arrhenius_fit`
* :func:`firemlip.analysis.conductivity.analyze_conductivity` / :func:`~firemlip.analysis.conductivity.nernst_einstein`
* :func:`firemlip.analysis.impedance.analyze_impedance`
* :func:`firemlip.analysis.elastic.analyze_elastic` (LAMMPS ``elastic.in.j2`` runs),
  :func:`~firemlip.analysis.elastic.analyze_elastic_ase` / :func:`~firemlip.analysis.elastic.elastic_tensor_ase`
* :func:`firemlip.analysis.scaling.analyze_scaling`
* :func:`firemlip.analysis.structure.structure_check` / :func:`~firemlip.analysis.structure.analyze_structure`

CLI (:mod:`firemlip.cli.analyze`):
``firemlip analyze diffusion|arrhenius|conductivity|impedance|elastic|scaling|structure``.

Transport results carry ``valid`` and ``invalid_reasons`` (non-diffusive MSD, melted framework, fewer than 3
temperatures, Ea ≤ 0, σ outside the physical range); the CLI repeats the reasons on stderr as
``firemlip: INVALID …`` lines. Diffusion removes the framework's centre-of-mass drift by default (``--drift``).
"""

from __future__ import annotations
