"""ASE calculator factories used by the labelling tests through ``python:slow_calculators:...``."""

from __future__ import annotations

import time

from ase.calculators.emt import EMT


class SlowEMT(EMT):
    """EMT that sleeps ``delay`` seconds per calculation, so a run can be killed mid-way."""

    def __init__(self, delay: float = 0.3, **kw) -> None:
        super().__init__(**kw)
        self.delay = delay

    def calculate(self, *args, **kw) -> None:  # type: ignore[override]
        time.sleep(self.delay)
        super().calculate(*args, **kw)


def slow_emt(delay: float = 0.3) -> SlowEMT:
    return SlowEMT(delay=delay)


class FailingEMT(EMT):
    """EMT that fails for cells whose first atom sits at x > 0.5 Å (a stand-in for an SCF that fails)."""

    def calculate(self, atoms=None, *args, **kw) -> None:  # type: ignore[override]
        if atoms is not None and atoms.positions[0, 0] > 0.5:
            raise RuntimeError("SCF did not converge")
        super().calculate(atoms, *args, **kw)


def failing_emt() -> FailingEMT:
    return FailingEMT()
