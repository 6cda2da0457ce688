"""Replay-augmented fine-tuning of MACE foundation models (FIRE) and its baselines.

Python: :func:`finetune` (strategies ``fire``, ``vanilla``, ``scratch``, ``mace-multihead``), options in
:class:`FinetuneOptions`; pseudo-label replay in :mod:`firemlip.training.replay`.
CLI: ``firemlip finetune --strategy fire --foundation M --train T [--valid V] [--replay R] -o OUT/``.
"""

from __future__ import annotations

from firemlip.options import FinetuneOptions
from firemlip.training.api import finetune, prepare, strategies
from firemlip.training.loop import STRATEGIES

__all__ = ["finetune", "prepare", "strategies", "STRATEGIES", "FinetuneOptions"]
