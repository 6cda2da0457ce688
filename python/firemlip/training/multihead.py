"""The external baseline: mace-torch's own multihead fine-tuning (``mace_run_train``), run offline-safe.

The command gets a local foundation path, a local replay extxyz as ``--pt_train_file`` (so mace never tries to
download MPtrj), ``--pseudolabel_replay True`` when the replay is pseudo-label replay (mace relabels it with the
foundation), ``--num_samples_pt = replay_ratio × n_task`` (one fixed subset — the difference to FIRE's fresh
per-epoch draw), and our ``REF_*`` keys. The fine-tuned model has heads ``pt_head`` and ``Default``;
``MACECalculator`` and :func:`firemlip.training.data.predict` use ``Default``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from firemlip.errors import FiremlipError

_EPOCH_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) INFO: Epoch (\d+): head: (\S+),")


def mace_run_train_exe() -> str:
    """Path of ``mace_run_train`` next to the running interpreter (or on PATH)."""
    cand = Path(sys.executable).parent / "mace_run_train"
    if cand.exists():
        return str(cand)
    found = shutil.which("mace_run_train")
    if not found:
        raise FiremlipError("mace-multihead: mace_run_train not found (install mace-torch in this environment)")
    return found


def build_command(foundation: Path, train: Path, valid: Path, replay: Path, work_dir: Path, *, pseudo: bool,
                  n_samples_pt: int, epochs: int, batch_size: int, lr: float, device: str, dtype: str, seed: int,
                  energy_weight: float, forces_weight: float, stress_weight: float, weight_pt: float,
                  stress: bool, extra: tuple[str, ...] = ()) -> list[str]:
    """The ``mace_run_train`` argument list for offline multihead fine-tuning."""
    cmd = [
        mace_run_train_exe(), "--name", "mh", "--work_dir", str(work_dir), "--seed", str(seed),
        "--foundation_model", str(foundation), "--multiheads_finetuning", "True",
        "--train_file", str(train), "--valid_file", str(valid), "--pt_train_file", str(replay),
        "--pseudolabel_replay", "True" if pseudo else "False",
        "--num_samples_pt", str(max(1, n_samples_pt)), "--subselect_pt", "random",
        "--weight_pt_head", str(weight_pt), "--force_mh_ft_lr", "True",
        "--energy_key", "REF_energy", "--forces_key", "REF_forces", "--stress_key", "REF_stress",
        "--E0s", "foundation", "--max_num_epochs", str(epochs), "--batch_size", str(batch_size),
        "--valid_batch_size", str(batch_size), "--lr", str(lr), "--device", device, "--default_dtype", dtype,
        "--energy_weight", str(energy_weight), "--forces_weight", str(forces_weight),
        "--stress_weight", str(stress_weight), "--eval_interval", "1", "--amsgrad", "--ema", "--ema_decay", "0.99",
        "--num_workers", "0", "--pin_memory", "False",
    ]
    if stress:
        cmd += ["--loss", "stress", "--compute_stress", "True"]
    return cmd + list(extra)


def epoch_times(log_text: str) -> list[float]:
    """Seconds between consecutive epoch reports of the first head in a mace training log (train + validation)."""
    stamps: list[datetime] = []
    first_head = None
    for line in log_text.splitlines():
        m = _EPOCH_LINE.match(line)
        if not m:
            continue
        first_head = first_head or m.group(3)
        if m.group(3) == first_head:
            stamps.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f"))
    return [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:], strict=False)]


def run_multihead(foundation: Path, train: Path, valid: Path, replay: Path, out_dir: Path, model_path: Path, *,
                  pseudo: bool, n_samples_pt: int, epochs: int, batch_size: int, lr: float, device: str,
                  dtype: str, seed: int, energy_weight: float, forces_weight: float, stress_weight: float,
                  weight_pt: float, stress: bool, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run ``mace_run_train`` in ``out_dir/mace_run`` and copy its model to ``model_path``."""
    work = out_dir / "mace_run"
    work.mkdir(parents=True, exist_ok=True)
    cmd = build_command(foundation.resolve(), train.resolve(), valid.resolve(), replay.resolve(), work.resolve(),
                        pseudo=pseudo, n_samples_pt=n_samples_pt, epochs=epochs, batch_size=batch_size, lr=lr,
                        device=device, dtype=dtype, seed=seed, energy_weight=energy_weight,
                        forces_weight=forces_weight, stress_weight=stress_weight, weight_pt=weight_pt,
                        stress=stress, extra=extra)
    env = dict(os.environ)
    t0 = time.perf_counter()
    log_path = out_dir / "mace_run_train.log"
    with open(log_path, "w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    wall = time.perf_counter() - t0
    produced = work / "mh.model"
    if proc.returncode != 0 or not produced.exists():
        tail = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()][-1:] or ["?"]
        raise FiremlipError(f"mace-multihead: mace_run_train failed (exit {proc.returncode}): {tail[0][:200]}; "
                            f"see {log_path}")
    from firemlip.io import atomic_path

    with atomic_path(model_path, suffix=".model") as tmp:
        shutil.copyfile(produced, tmp)
    logs = sorted((work / "logs").glob("*.log"))
    text = "\n".join(p.read_text(errors="replace") for p in logs if not p.name.endswith("_debug.log"))
    times = epoch_times(text)
    return {"mace_command": cmd, "wall_time_s": wall, "epoch_wall_s": times,
            "epoch_wall_s_mean": (sum(times) / len(times)) if times else None}
