#!/usr/bin/env bash
# Regenerate the CPU figures of docs/measured/ from a clean commit.
#
#   bash benchmarks/regenerate_cpu.sh                 # every step, in the order below
#   bash benchmarks/regenerate_cpu.sh default parity  # some steps
#   bash benchmarks/regenerate_cpu.sh --list          # the steps, with what each writes
#
# It refuses a tree with uncommitted changes, checks the commit out into a scratch worktree and runs
# every command there, so each stored run and each report says the commit (never `+dirty`) even after
# the first step has written into docs/measured/. Each step writes its generated files (report.md,
# summary.csv, comparison.md, plots/, ..., and output.txt: what the commands printed) into
# docs/measured/<folder>/generated/ and a `measured.md`
# beside them: the command, the commit, the date, the wall time, the package versions and the
# hardware (CPU model, cores, torch threads). The prose beside a step's folder (README.md, or the
# page named in --list) quotes figures from those files; after a regeneration, read the new numbers
# and update the prose (`git diff docs/measured` shows what moved).
#
# Environment: SPARSEBENCH_CACHE (the model cache, default ~/.cache/sparsebench; the offline models
# are trained there on first use and their training time is in their metadata), PYTHON (default
# python3 on PATH; it needs the project's dependencies, e.g. .tox/sparsebench/bin/python),
# THREADS (torch threads per step, default: all cores). Timing figures depend on the CPU: a figure
# from another machine is a different measurement, and bf16 speed in particular depends on the
# CPU's instruction set (precision step).
set -euo pipefail

ROOT=$(git rev-parse --show-toplevel)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
MEASURED="$ROOT/docs/measured"

# name | folder under docs/measured | minutes on 2 cores (about) | what it measures
STEPS=(
  "default|fashion-mnist-default-cpu|4|sparsebench run with the packaged default config"
  "default-time|default-time-cpu|8|where the default run's time goes, from an empty model cache"
  "offline-search|offline-search-cpu|7|the minimum-norm searches the default leaves out"
  "parity|parity-cpu|20|each native baseline beside its reference implementation"
  "lin2025-study|lin2025-study-cpu|5|the proposed attack's open choices"
  "lin2025-heldout|lin2025-heldout-cpu|2|lin2025-improved on samples disjoint from the study's"
  "lin2025-frontier|lin2025-frontier-cpu|40|lin2025-frontier's ideas one at a time, then held out against sigma-zero"
  "lin2025-frontier-settings|lin2025-frontier-cpu/settings|6|lin2025-frontier's settings one at a time around its defaults, robust models targeted"
  "lin2025-fig7|lin2025-fig7-cpu|25|the paper's Figure 7 sweeps"
  "paper-tables|paper-tables-offline|45|sparsebench reproduce table1..table4, offline counterparts"
  "transfer|transfer-offline-cpu|6|transferability between the offline models"
  "interpret|interpret-offline-cpu|4|obscuring and leading noise (Grad-CAM)"
  "baselines-ii|baselines-ii-cpu|50|GreedyFool, EGS-TSSA, Sparse-PGD, Homotopy, SA-MOO, BruSLeAttack"
  "greedyfool-map|greedyfool-map-cpu|8|GreedyFool's learned distortion map against the uniform one"
  "egs-tssa-saliency|egs-tssa-saliency-cpu|20|EGS-TSSA's groups from Grad-CAM against the input gradient"
  "sparse-pgd-loss|sparse-pgd-loss-cpu|15|Sparse-PGD with cross-entropy, margin, or the release's switch"
  "hot-paths|hot-paths-cpu|3|attack time against counted passes (sparsebench bench)"
  "operation-counts|operation-counts-cpu|12|the early-stopping attacks' operations and syncs per step, and their call_ratio"
  "precision|precision-cpu|3|bf16 / channels-last tolerance (CPU-dependent)"
  "sparsefool-speed|sparsefool-speed-cpu|3|native SparseFool against torchattacks'"
)

if [[ ${1:-} == "--list" ]]; then
  for s in "${STEPS[@]}"; do IFS='|' read -r name folder minutes what <<<"$s"
    printf '%-17s docs/measured/%-28s ~%3s min  %s\n' "$name" "$folder/generated/" "$minutes" "$what"; done
  exit 0
fi

wanted=("$@")
for name in "${wanted[@]}"; do
  [[ "|${STEPS[*]}" == *" $name|"* || "${STEPS[*]}" == "$name|"* ]] || { echo "regenerate_cpu.sh: no step named $name (--list shows them)" >&2; exit 2; }
done

if [[ -n $(git status --porcelain --untracked-files=no) ]]; then
  echo "regenerate_cpu.sh: the tree has uncommitted changes; commit them first (figures are measured at a clean commit)" >&2
  exit 2
fi
COMMIT=$(git rev-parse HEAD)
WORK=$(mktemp -d /tmp/sparsebench-regenerate.XXXXXX)
git worktree add --detach "$WORK/tree" "$COMMIT" >/dev/null
trap 'git -C "$ROOT" worktree remove --force "$WORK/tree" >/dev/null 2>&1 || true' EXIT
STORE="$WORK/stores"
mkdir -p "$STORE"
export PYTHONPATH="$WORK/tree"  # the worktree's code, whatever the environment has installed
[[ -n ${THREADS:-} ]] && export OMP_NUM_THREADS=$THREADS
SB="$PYTHON -m bench.cli"

provenance() {  # provenance FOLDER SECONDS COMMAND...
  local folder=$1 seconds=$2
  shift 2
  {
    echo "# How the files in this folder were measured"
    echo
    echo "Written by \`bash benchmarks/regenerate_cpu.sh\` at commit \`$COMMIT\` (a clean tree), $(date -u +%F)."
    echo "Wall time of the step: ${seconds} s. Commands, run from a checkout of that commit:"
    echo
    echo '```sh'
    printf '%s\n' "$@"
    echo '```'
    echo
    (cd "$WORK/tree" && "$PYTHON" -c '
import json, os, torch
from bench.provenance import hardware, versions
info = hardware(torch.device("cpu"))
print("- CPU:", info.get("cpu_model"), "-", info.get("cpu_count"), "cores,", info.get("torch_threads"), "torch threads")
print("- platform:", info.get("platform"))
print("- versions:", json.dumps(versions(), sort_keys=True))
print("- model cache:", os.environ.get("SPARSEBENCH_CACHE", "~/.cache/sparsebench"))
')
  } >"$folder/measured.md"
}

run_step() {  # run_step NAME FOLDER
  local name=$1 out="$MEASURED/$2/generated" start=$SECONDS
  local -a commands
  rm -rf "$out"
  mkdir -p "$out"
  case $name in
    default) commands=("sparsebench run --config default --store STORE/default.sqlite --out OUT --no-progress") ;;
    default-time) commands=("python benchmarks/default_run_time.py") ;;
    offline-search) commands=("sparsebench run --config offline-search --store STORE/offline-search.sqlite --out OUT --no-progress") ;;
    parity) commands=("sparsebench run --config parity-offline --store STORE/parity.sqlite --out OUT --no-progress"
                      "sparsebench parity --store STORE/parity.sqlite --out OUT") ;;
    lin2025-study) commands=("sparsebench run --config lin2025-study --store STORE/study.sqlite --out OUT --no-progress") ;;
    lin2025-heldout) commands=("sparsebench run --config lin2025-heldout --store STORE/heldout.sqlite --out OUT --no-progress"
                               "sparsebench leaderboard --store STORE/heldout.sqlite --out OUT/leaderboard") ;;
    lin2025-frontier) commands=("python benchmarks/lin2025_frontier_study.py --part tuning --threads 1"
                                "python benchmarks/lin2025_frontier_study.py --part heldout --threads 1") ;;
    lin2025-frontier-settings) commands=("python benchmarks/lin2025_frontier_study.py --part tuning --models smallcnn-pgd-at smallcnn-fast-at --modes targeted --steps 985 --threads 1 --configs frontier --set delta_step=0.00196 --set delta_step=0.00784 --set lam_factor=0.02 --set lam_factor=0.1 --set threshold_factor=0.05 --set threshold_factor=0.2 --set lr=0.015 --set lr=0.06 --set a=0.2 --set a=0.5 --set w_init=0.05 --set w_init=0.3") ;;
    lin2025-fig7) commands=("sparsebench run --config lin2025-fig7 --store STORE/fig7.sqlite --out OUT --no-progress") ;;
    paper-tables) commands=("sparsebench reproduce table1 --store STORE/paper.sqlite --out OUT --no-progress"
                            "sparsebench reproduce table2 --store STORE/paper.sqlite --out OUT --no-progress"
                            "sparsebench reproduce table3 --store STORE/paper.sqlite --out OUT --no-progress"
                            "sparsebench reproduce table4 --store STORE/paper.sqlite --out OUT --no-progress") ;;
    transfer) commands=("sparsebench run --config transfer-offline --store STORE/transfer.sqlite --out OUT --no-progress"
                        "sparsebench transfer --store STORE/transfer.sqlite --out OUT") ;;
    interpret) commands=("sparsebench run --config interpret-offline --store STORE/interpret.sqlite --out OUT --no-progress"
                         "sparsebench interpret --store STORE/interpret.sqlite --attack lin2025-improved --attack fmn-l0 --model smallcnn-standard --mode untargeted --samples 50 --out OUT"
                         "sparsebench interpret --store STORE/interpret.sqlite --attack lin2025-improved --attack fmn-l0 --model smallcnn-standard --mode targeted --samples 50 --out OUT") ;;
    baselines-ii) commands=("sparsebench run --config baselines-ii --store STORE/baselines-ii.sqlite --out OUT --no-progress") ;;
    greedyfool-map) commands=("python benchmarks/greedyfool_map.py") ;;
    egs-tssa-saliency) commands=("python benchmarks/egs_tssa_saliency.py --cache-dir STORE/egs-tssa"
                                 "python benchmarks/egs_tssa_saliency.py --map-coverage --samples 128") ;;
    sparse-pgd-loss) commands=("python benchmarks/sparse_pgd_loss.py --seed 0 > OUT/seed0.md"
                               "python benchmarks/sparse_pgd_loss.py --seed 1 > OUT/seed1.md"
                               "python benchmarks/sparse_pgd_loss.py --summarize OUT/seed0.md OUT/seed1.md") ;;
    hot-paths) commands=("sparsebench bench lin2025 i-fgsm --batch-size 256 --rounds 5 --clock cpu --out OUT"
                         "python -m pytest -q -p no:cacheprovider tests/test_benchmarks.py --benchmark-enable --benchmark-columns=min,median,max,rounds --benchmark-json=OUT/pytest-benchmark.json") ;;
    operation-counts) commands=("python benchmarks/operation_counts.py > OUT/operation-counts.md"
                                "sparsebench bench sparse-rs brusleattack sparse-pgd pgd-l0 homotopy fmn-l0 --overrides-from timing-cifar10 --batch-size 256 --rounds 3 --clock cpu --count-ops --out OUT") ;;
    precision) commands=("python benchmarks/precision_tolerance.py --out OUT") ;;
    sparsefool-speed) commands=("python benchmarks/sparsefool_speed.py --cache-dir STORE/sparsefool-speed") ;;
    *) echo "regenerate_cpu.sh: no step named $name (--list shows them)" >&2; return 2 ;;
  esac
  local shown=() command
  for command in "${commands[@]}"; do
    shown+=("$(sed -e "s|STORE/|<store>/|g" -e "s|OUT|docs/measured/$2/generated|g" <<<"$command")")
    command=${command//STORE/$STORE}
    command=${command//OUT/$out}
    command=${command/#sparsebench /$SB }
    command=${command/#python /$PYTHON }
    echo "== $name: $command"
    (cd "$WORK/tree" && eval "$command") 2>&1 | tee -a "$out/output.txt" | tail -n 40
  done
  provenance "$out" $((SECONDS - start)) "${shown[@]}"
  echo "== $name: done in $((SECONDS - start)) s -> docs/measured/$2/generated/"
}

for s in "${STEPS[@]}"; do IFS='|' read -r name folder _ _ <<<"$s"
  if [[ ${#wanted[@]} -eq 0 || " ${wanted[*]} " == *" $name "* ]]; then run_step "$name" "$folder"; fi
done
