"""firemlip: FIRE (Fine-tuning with Integrated Replay and Efficiency) for MACE potentials, LAMMPS-centric.

Stages (one module each): structures, labelling, importing, foundation, training, evaluation, sampling,
selection, lammps, analysis, audit, workflow. Units: ASE units (eV, Å, fs, K) throughout.
"""

__version__ = "0.1.0"
