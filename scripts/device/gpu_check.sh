#!/usr/bin/env bash
# Runs ON the device machine (see scripts/device/README.md): installs the carried wheels,
# then the GPU tests and benchmarks, writing logs to $OUT.
#   bash scripts/device/gpu_check.sh app     # pytest -m gpu + extraction benchmark
#   bash scripts/device/gpu_check.sh bench   # SAE training benchmark vs SAELens/sparsify
#   bash scripts/device/gpu_check.sh more    # analysis, steering and on-the-fly GPU figures
set -uo pipefail
group="${1:?usage: gpu_check.sh app|bench|more}"
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site ".whl-${group/more/app}"/*.whl || exit 3
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 MISTUDIO_NO_KEYRING=1 \
       HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 MISTUDIO_DATA_DIR=/tmp/mistudio-data
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
case "$group" in
  app)
    # GPU tests live in files named *gpu*.py that import only the core (no Qt there)
    timeout 240 python3 -m pytest -p no:cacheprovider -p no:pytestqt -m gpu -q \
        $(ls tests/*/test*gpu*.py) 2>&1 | tee "$OUT/pytest_gpu.txt"
    timeout 180 python3 benchmarks/extract_bench.py --gpt2small --device cuda 2>&1 \
        | tee "$OUT/extract_bench.txt" ;;
  bench)
    timeout 420 python3 benchmarks/sae_train_bench.py --device cuda 2>&1 \
        | tee "$OUT/sae_train_bench.txt" ;;
  more)
    # the #12 / #15 / #19 GPU targets (carry .whl-app: their GPU paths use torch, not numba)
    timeout 200 python3 benchmarks/analysis_bench.py --gpu 2>&1 | tee "$OUT/analysis_bench_gpu.txt"
    timeout 120 python3 benchmarks/steering_bench.py --device cuda --dtype bfloat16 --random \
        2>&1 | tee "$OUT/steering_bench_gpu.txt"
    timeout 200 python3 benchmarks/onthefly_bench.py --gpu --json "$OUT/onthefly_gpu.json" 2>&1 \
        | tee "$OUT/onthefly_bench_gpu.txt" ;;
esac
