#!/usr/bin/env bash
# The GPU measurements of docs/measured/gpu-h200/, in one call of bounded length (a GPU session here is 15 minutes).
#
# Run from the repository root on a machine with a CUDA GPU and no network:
#
#   SPARSEBENCH_GIT_COMMIT=<commit> OUT=<folder> bash benchmarks/gpu_session.sh
#
# It needs, in $CARRY (default .devcarry; benchmarks/prepare_gpu_carry.sh makes it): the
# Fashion-MNIST files (fashion-mnist/), the trained SmallCNNs (cache/, as `sparsebench run`
# leaves them), and pure-Python wheels of robustbench and what it imports (whl/), which are
# unpacked, not installed, so nothing on the machine changes. Each phase has a time limit
# and writes its files as it goes, so a phase cut short keeps what it measured; everything
# ends up in $OUT/gpu-results.tar.gz, with phases.txt saying how each phase ended.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-out}
CARRY=${CARRY:-.devcarry}
WORK=$(mktemp -d)
R="$WORK/results"  # packed into $OUT/gpu-results.tar.gz after every phase
mkdir -p "$R" "$OUT"

SITE=/tmp/sparsebench-site
mkdir -p "$SITE"
for wheel in "$CARRY"/whl/*.whl; do "${PY:-python3}" -m zipfile -e "$wheel" "$SITE"; done
rm -rf "$SITE/tests"  # a wheel's stray top-level tests/ must not shadow ours
export PYTHONPATH="$SITE:$PWD"
export SPARSEBENCH_CACHE="$PWD/$CARRY/cache" SPARSEBENCH_FASHION_MNIST_DIR="$PWD/$CARRY/fashion-mnist"
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu PY=<a python like the GPU machine's> rehearses the script elsewhere
SB="$PY -m bench.cli"
SYNTH="--synthetic --dataset cifar10 --overrides-from timing-cifar10"

phase() {  # phase NAME LIMIT_SECONDS COMMAND...
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  echo "== $name (limit ${limit}s) $(date -u +%FT%TZ): $*" | tee -a "$R/phases.txt"
  timeout --signal=INT --kill-after=15 "$limit" "$@" > "$R/$name.log" 2>&1
  rc=$?
  echo "   $name: exit $rc after $((SECONDS - start)) s" | tee -a "$R/phases.txt"
  tail -n 30 "$R/$name.log"
  tar -czf "$OUT/gpu-results.tar.gz" -C "$WORK" results
}

phase env 30 bash -c 'nvidia-smi; '"$PY"' -c "
import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name())
from bench.zoo import _import_robustbench; print(\"robustbench\", _import_robustbench().__file__)"'

# 1. Every native attack on RobustBench's Fast-AT PreActResNet-18 architecture, untrained,
#    32x32x3 uniform inputs, batch 256, fp32; its call_ratio column prices each call at its own batch size.
#    For the early-stopping attacks (sparse-rs, pgd-l0, sparse-pgd, brusleattack, their -min searches,
#    homotopy) call_ratio is what their steps on the last few samples cost beyond the model's own calls;
#    the goal is under 1.5. Their operation counts, which do not depend on the device, are measured on
#    the CPU (docs/measured/operation-counts-cpu/).
phase cifar10-synthetic 175 $SB bench native $SYNTH --model robustbench/Wong2020Fast --batch-size 256 \
  --rounds 1 --device $DEVICE --out "$R/cifar10-synthetic"

# 2. The offline benchmark (packaged config `default`) on the GPU, from the carried models.
phase default-run 195 $SB run --config default --store "$R/default.sqlite" --out "$R/default" --no-progress

# 3. The speed options' tolerance test, with bf16 and fp16 (CUDA only).
phase tolerance 60 env SPARSEBENCH_TEST_DEVICE=$DEVICE "$PY" -m pytest -q -p no:cacheprovider tests/test_speed.py

# 4. The batch-size search, and what a larger batch buys per sample.
phase batch-auto 35 $SB bench lin2025 fmn-l0 $SYNTH --model robustbench/Wong2020Fast --batch-size auto \
  --samples 2048 --rounds 1 --modes untargeted --device $DEVICE --out "$R/batch-auto"

# 5. The proposed attack's efficiency on RobustBench's Standard WRN-28-10 (3 rounds), fp32 and
#    bf16 + channels-last.
phase lin2025-wrn 35 $SB bench lin2025 i-fgsm $SYNTH --model robustbench/Standard --batch-size 256 \
  --rounds 3 --modes untargeted --device $DEVICE --out "$R/lin2025-wrn-fp32"
phase lin2025-wrn-bf16 30 $SB bench lin2025 i-fgsm $SYNTH --model robustbench/Standard --batch-size 256 \
  --rounds 3 --modes untargeted --device $DEVICE --precision bf16 --channels-last --out "$R/lin2025-wrn-bf16"

cat "$R/phases.txt"
