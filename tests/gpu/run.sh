#!/usr/bin/env bash
# The GPU check, one command on a CUDA machine (README, "On a GPU"): the CUDA tests, then bench throughput on the
# default toy world and on the real-size AlexNet + DeePSiM fc6 + CaffeNet path (random weights), the latter
# also with the compute settings the CUDA defaults replaced.
#   bash tests/gpu/run.sh [OUT_DIR]     # PYTHON=python3 by default; atlas must import (pip install -e . or
#                                       # PYTHONPATH); reports land in OUT_DIR (default runs/gpu-check)
set -uo pipefail
OUT_DIR=${1:-runs/gpu-check}
PY=${PYTHON:-python3}
unset ATLAS_GPU_TESTS_ON  # the tests' CPU dry run: never here
unset ATLAS_GPU_TESTS_ON  # the tests' CPU dry run: never here
if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "tests/gpu/run.sh: no CUDA device visible to $PY (torch.cuda.is_available() is False); run it on a GPU machine" >&2
  exit 2
fi
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee "$OUT_DIR/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" \
  | tee -a "$OUT_DIR/gpu.txt"
status=0
timeout 240 $PY -m pytest --noconftest -p no:cacheprovider -q -s -m gpu tests/gpu 2>&1 | tee "$OUT_DIR/tests.log" \
  || status=1
timeout 150 $PY -m atlas bench throughput --batches 1,16,128,1024 --json "$OUT_DIR/toyworld.json" 2>&1 \
  | tee "$OUT_DIR/toyworld.log" || status=1
ALEXNET=(--config configs/alexnet-deepsim.yaml --set models.allow_random_weights=true
  --set models.target.weights=null --set models.generator.weights=null --set models.encoder.weights=null)
timeout 200 $PY -m atlas bench throughput "${ALEXNET[@]}" --batches 1,16,64,256,1024 \
  --json "$OUT_DIR/alexnet-deepsim.json" 2>&1 | tee "$OUT_DIR/alexnet-deepsim.log" || status=1
# the settings the defaults replaced (channels_last, no cuDNN autotuner), for the README's comparison
timeout 120 $PY -m atlas bench throughput "${ALEXNET[@]}" --set compute.channels_last=true \
  --set compute.cudnn_benchmark=false --methods dgn_am,ppgn_h/joint --batches 256,1024 \
  --json "$OUT_DIR/alexnet-deepsim-before.json" 2>&1 | tee "$OUT_DIR/alexnet-deepsim-before.log" || status=1
exit $status
