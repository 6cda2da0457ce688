"""Model audit before deployment: short-range holes, pair scans and MD stability gates.

A fine-tuned potential can have a low test RMSE and still collapse in production MD when it has seen few short
interatomic distances. ``firemlip audit`` checks, before GPU-days are spent in LAMMPS:

1. ``coverage``: per element pair, the shortest distance in the training data (the trusted range);
2. ``pair_scan``: isolated dimers from 0.5 Å to the cut-off against the universal ZBL repulsion
   (:mod:`firemlip.audit.zbl`), flagged when attractive/flat in the wall window or with a spurious minimum;
3. ``host_scan``: one host atom pushed towards its neighbour, judged the same way;
4. ``hole_hunt``: random compressions and insertions plus a short relaxation; collapsed pairs are saved to
   ``holes.extxyz`` for labelling (``firemlip label``);
5. ``md_grid``: short NVT runs over temperatures × seeds with the sampling stage's stability guard.

Python: :func:`audit` (thresholds: :class:`AuditSettings`), :func:`add_zbl` (the ``finetune --zbl`` remedy),
:func:`zbl_energy`. CLI: ``firemlip audit MODEL --structures HOST.extxyz [--train TRAIN.extxyz] -o DIR/``
(exit status 0 when every gate passes, 1 when one fails, 2 for bad input).
"""

from __future__ import annotations

from firemlip.audit.api import audit
from firemlip.audit.report import GATES, summary_text
from firemlip.audit.settings import AuditSettings
from firemlip.audit.zbl import add_zbl, has_zbl, zbl_energy

__all__ = ["GATES", "AuditSettings", "add_zbl", "audit", "has_zbl", "summary_text", "zbl_energy"]
