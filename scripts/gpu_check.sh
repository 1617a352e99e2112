#!/usr/bin/env bash
# GPU check for minichinchilla (chapters/12-performance.md): the CuPy tests, then a training
# step on the GPU side by side with PyTorch CUDA eager. Installs nothing: it expects CUDA, CuPy
# (requirements-gpu.txt) and PyTorch with CUDA to be installed already. About 2–4 minutes.
#
# Usage (from anywhere):  bash scripts/gpu_check.sh OUT_DIR
# Writes into OUT_DIR: environment.txt, pytest-gpu.txt, gpu-bench.txt, gpu-bench.json, summary.txt
set -uo pipefail
OUT=${1:?usage: bash scripts/gpu_check.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
export PYTHONHASHSEED=0 MPLBACKEND=Agg
status=0

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  git rev-parse HEAD 2>/dev/null || true
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo "nvidia-smi not found"
  python - <<'PY'
import platform
import numpy
print("python", platform.python_version(), "numpy", numpy.__version__)
try:
    import cupy
    print("cupy", cupy.__version__, "CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(),
          "device", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode())
except Exception as e:  # noqa: BLE001
    print("cupy: NOT usable:", e)
try:
    import torch
    print("torch", torch.__version__, "cuda available", torch.cuda.is_available(),
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
except Exception as e:  # noqa: BLE001
    print("torch: NOT usable:", e)
from minichinchilla.backend import cupy_available
print("minichinchilla.backend.cupy_available():", cupy_available())
PY
} > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"

# 1. The gpu-marked tests (CuPy parity of every kernel, the whole model, a short training run).
#    A first run compiles CuPy's kernels (cached in ~/.cupy afterwards): allow for it.
echo "=== pytest -m gpu"
timeout 150 python -m pytest -m gpu tests/ -q -rs -p no:cacheprovider > "$OUT/pytest-gpu.txt" 2>&1
rc=$?
tail -n 15 "$OUT/pytest-gpu.txt"
[ $rc -eq 0 ] || status=1
if grep -q "skipped" "$OUT/pytest-gpu.txt" && ! grep -q "passed" "$OUT/pytest-gpu.txt"; then
  echo "every gpu test was SKIPPED: CuPy cannot run here" | tee -a "$OUT/pytest-gpu.txt"
  status=1
fi

# 2. Step time against PyTorch CUDA eager: config b64 (batch 64) and b (batch 8), fresh child
#    process per measurement, warm-up steps absorb kernel compilation.
echo "=== bench --device gpu"
timeout 150 python -m minichinchilla bench --device gpu --configs b64,b --threads 1 \
  --warmup 5 --repeats 20 --json "$OUT/gpu-bench.json" > "$OUT/gpu-bench.txt" 2>&1
rc=$?
cat "$OUT/gpu-bench.txt"
[ $rc -eq 0 ] || status=1

{
  echo "gpu_check.sh exit status: $status"
  grep -E "passed|failed|skipped|error" "$OUT/pytest-gpu.txt" | tail -n 1
  grep -E "^config|minichinchilla / pytorch" "$OUT/gpu-bench.txt"
} > "$OUT/summary.txt"
cat "$OUT/summary.txt"
exit $status
