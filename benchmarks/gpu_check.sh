#!/usr/bin/env bash
# owp's prepared GPU check (issue 14): one script, about 6 minutes on an H100/H200-class GPU,
# at most 8 (every step has a time cap and the whole a deadline).
#
#   benchmarks/gpu_check.sh [--cpu] [OUT_FOLDER]
#
# Run from the repository root. OUT_FOLDER defaults to $OUT (the device tool's folder), else
# ./gpu-check-out. Steps, each logged to OUT_FOLDER/gpu_check.log:
#   1. install: when pycocotools or faster-coco-eval is missing (a bare GPU image lacks both),
#      the wheels in ./.whl go to /tmp/owp-site; src/ is put on PYTHONPATH (no network, no
#      build);
#   2. the test suite's CUDA tests (tests/engine/test_cuda.py: fp16/bf16 AMP steps, resume
#      under AMP, inductor compile, bf16 + channels-last inference);
#   3. a 1-GPU torchrun DDP run over NCCL (benchmarks/ddp_train.py), 50 iterations, bf16;
#   4. owp bench: FCOS R50-FPN at 800x1333, inference at batch 1 and 8 (torchvision fp32; owp
#      fp32, bf16, bf16 + channels-last, + torch.compile) and the train step at batch 8 (fp32,
#      bf16, bf16 + channels-last), with peak memory;
#   5. synth-t1-iou-cs-is trained in fp32 and in bf16: novel AR@100 must agree within 0.5;
#   6. the two-stage models (synth-rpn, synth-oln, synth-double-head): each trained briefly in
#      bf16, then its weights evaluated in fp32 (the run's own evaluation) and under bf16
#      autocast (owp eval --amp bf16): novel AR@100 must agree within 0.5 (issue 20: their
#      anchors, decoding and RoI boxes stay fp32 under autocast).
# OUT_FOLDER/summary.md gathers the tables; bench.json holds the bench rows.
#
# --cpu: a dry run on this CPU with tiny sizes and iterations (gloo instead of NCCL, no
# compiled bench variant: inductor's C++ build takes minutes on a small CPU, and the AR
# difference is reported, not checked), so that every step is known to work before a GPU
# session spends its minutes.
#
# On the device machine (wheels carried in .whl; prepare them once, here, with pip download
# as /work/.library/device/README.md says, for pycocotools and faster-coco-eval):
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=560)

set -u -o pipefail

CPU=0
if [[ "${1:-}" == "--cpu" ]]; then
  CPU=1
  shift
fi
OUT_DIR="${1:-${OUT:-gpu-check-out}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
LOG="$OUT_DIR/gpu_check.log"
SUMMARY="$OUT_DIR/summary.md"
WORK="$(mktemp -d /tmp/owp-gpu-check.XXXXXX)"
: >"$LOG"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg OWP_HOME="$WORK/home"
if [[ -x "$REPO/.venv/bin/python" && $CPU -eq 1 ]]; then
  PY="${PYTHON:-$REPO/.venv/bin/python}"
else
  PY="${PYTHON:-python3}"
fi
DEADLINE=$((SECONDS + 530))
[[ $CPU -eq 1 ]] && DEADLINE=$((SECONDS + 900))
FAILED=0
STEPS="$WORK/steps.md"
printf '| step | result | seconds |\n|---|---|---|\n' >"$STEPS"

say() { echo "$*" | tee -a "$LOG"; }

# run_capped CAP COMMAND...: run COMMAND (a shell function too) in its own process group; after
# CAP seconds the group is ended and the status is 124.
run_capped() {
  local cap="$1" waited=0
  shift
  set -m
  ("$@") &
  local pid=$!
  set +m
  while kill -0 "$pid" 2>/dev/null; do
    if ((waited >= cap)); then
      kill -TERM -- "-$pid" 2>/dev/null
      sleep 3
      kill -KILL -- "-$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
      return 124
    fi
    sleep 1
    waited=$((waited + 1))
  done
  wait "$pid"
}

# step NAME CAP_SECONDS COMMAND...: run with a time cap (and within the deadline), log it,
# record ok / FAILED / skipped.
step() {
  local name="$1" cap="$2"
  shift 2
  local left=$((DEADLINE - SECONDS))
  if ((left < 20)); then
    say "== $name: skipped (deadline)"
    echo "| $name | skipped (deadline) | 0 |" >>"$STEPS"
    FAILED=1
    return 1
  fi
  ((cap > left)) && cap=$left
  say "== $name (cap ${cap} s)"
  local start=$SECONDS rc=0
  run_capped "$cap" "$@" >>"$LOG" 2>&1 || rc=$?
  local took=$((SECONDS - start))
  if ((rc == 0)); then
    echo "| $name | ok | $took |" >>"$STEPS"
    say "   ok in ${took} s"
  else
    echo "| $name | FAILED (exit $rc$( ((rc == 124)) && echo ', time cap')) | $took |" >>"$STEPS"
    say "   FAILED (exit $rc) in ${took} s; see $LOG"
    FAILED=1
  fi
  return $rc
}

owp() { "$PY" -m owp.cli "$@"; }

install() {
  if ! "$PY" -c "import pycocotools, faster_coco_eval" 2>/dev/null &&
    compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/owp-site .whl/*.whl || return 1
    export PYTHONPATH="/tmp/owp-site:$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
  else
    export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
  fi
  "$PY" - <<'EOF'
import importlib
missing = []
for name in ("torch", "torchvision", "numpy", "PIL", "pycocotools", "faster_coco_eval", "yaml",
             "tqdm", "matplotlib", "pytest"):
    try:
        importlib.import_module(name)
    except ImportError:
        missing.append(name)
if missing:
    raise SystemExit(f"missing packages: {', '.join(missing)} (carry their wheels in .whl)")
import torch, torchvision, owp
print(f"owp {owp.__version__} from {owp.__file__}; torch {torch.__version__}, torchvision "
      f"{torchvision.__version__}; CUDA {torch.cuda.is_available()}"
      + (f" ({torch.cuda.get_device_name()}, bf16 {torch.cuda.is_bf16_supported()})"
         if torch.cuda.is_available() else ""))
EOF
}

# Sizes: the real check on a GPU, tiny ones for the CPU dry run.
if [[ $CPU -eq 1 ]]; then
  DEVICE=cpu
  AMP_FAST=bf16
  DDP_ITERS=4
  PARITY_ITERS=4
  TWO_STAGE_ITERS=2
  TWO_STAGE_CAP=180  # a CPU evaluates Double-Head's conv head under bf16 slowly
  BENCH_ARGS=(--quick --device cpu --height 32 --width 48 --batches 1 --train-batch 1
    --iters 1 --warmup 0)
  TRAIN_SETS=(--set data.num_workers=0 --set model.min_size=96 --set model.max_size=96
    --set train.batch_size=2 --set train.warmup_iters=1 --set "eval.max_dets=[10, 100]")
else
  DEVICE=cuda
  AMP_FAST=bf16
  DDP_ITERS=50
  PARITY_ITERS=400
  TWO_STAGE_ITERS=100
  TWO_STAGE_CAP=90
  BENCH_ARGS=(--device cuda --height 800 --width 1333 --batches 1,8 --train-batch 8
    --iters 10 --warmup 3 --compile)
  TRAIN_SETS=(--set data.num_workers=8)
fi

data_sets=()
prepare_data() {
  if [[ $CPU -eq 1 ]]; then
    owp data synth --out "$WORK/synth" --train 16 --val 4 --size 96 || return 1
  else  # the preset's default synthetic set (800 + 200 images, 320 px), generated once
    "$PY" -c "from owp.data.locate import default_synthetic_dataset as d; print(d(False))" ||
      return 1
  fi
}

ddp_run() {
  "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 benchmarks/ddp_train.py \
    train --preset synth-t1-iou-cs-is --out "$WORK/ddp" --device "$DEVICE" \
    "${data_sets[@]}" "${TRAIN_SETS[@]}" --set train.max_iters="$DDP_ITERS" \
    --set train.amp="$AMP_FAST" --set train.log_period=10 &&
    grep -q "process group: $([[ $CPU -eq 1 ]] && echo gloo || echo nccl), world size 1" "$LOG"
}

bench() {
  owp bench "${BENCH_ARGS[@]}" --json "$OUT_DIR/bench.json" | tee "$WORK/bench.txt"
}

parity_run() {  # parity_run AMP
  owp train --preset synth-t1-iou-cs-is --out "$WORK/parity-$1" --device "$DEVICE" \
    "${data_sets[@]}" "${TRAIN_SETS[@]}" --set train.max_iters="$PARITY_ITERS" \
    --set train.amp="$1"
}

compare_ar() {
  "$PY" - "$WORK" "$CPU" >"$WORK/parity.md" <<'EOF'
import json, sys
from pathlib import Path
work, dry = Path(sys.argv[1]), sys.argv[2] == "1"
ar = {amp: 100 * json.loads((work / f"parity-{amp}" / "eval" / "metrics.json").read_text())["AR@100"]
      for amp in ("none", "bf16")}
delta = ar["bf16"] - ar["none"]
agree = abs(delta) <= 0.5
print("| synth-t1-iou-cs-is | novel AR@100 |\n|---|---|")
print(f"| fp32 | {ar['none']:.2f} |\n| bf16 AMP | {ar['bf16']:.2f} |")
verdict = "dry run: reported, not checked" if dry else ("agree" if agree else "DIFFER")
print(f"| bf16 - fp32 | {delta:+.2f} points (goal: within 0.5; {verdict}) |")
sys.exit(0 if agree or dry else 1)
EOF
  local rc=$?
  cat "$WORK/parity.md"
  return $rc
}

# two_stage_run PRESET: trained in bf16 (fp32 evaluation at its end), then the same weights
# evaluated under bf16 autocast.
two_stage_run() {
  owp train --preset "$1" --out "$WORK/two-stage-$1" --device "$DEVICE" \
    "${data_sets[@]}" "${TRAIN_SETS[@]}" --set train.max_iters="$TWO_STAGE_ITERS" \
    --set train.amp="$AMP_FAST" &&
    owp eval "$WORK/two-stage-$1" --device "$DEVICE" --amp "$AMP_FAST" --max-dets 10,100 \
      --out "$WORK/two-stage-$1/eval-$AMP_FAST"
}

compare_two_stage() {
  "$PY" - "$WORK" "$CPU" "$AMP_FAST" >"$WORK/two_stage.md" <<'EOF'
import json, sys
from pathlib import Path
work, dry, amp = Path(sys.argv[1]), sys.argv[2] == "1", sys.argv[3]
print(f"| two-stage model | novel AR@100, fp32 eval | {amp} autocast eval | difference |")
print("|---|---|---|---|")
bad = []
for run in sorted(work.glob("two-stage-*")):
    def read(folder):
        return 100 * json.loads((folder / "metrics.json").read_text())["AR@100"]
    try:
        fp32, mixed = read(run / "eval"), read(run / f"eval-{amp}")
    except FileNotFoundError:
        print(f"| {run.name} | missing | missing | |")
        bad.append(run.name)
        continue
    delta = mixed - fp32
    if abs(delta) > 0.5:
        bad.append(run.name)
    print(f"| {run.name.removeprefix('two-stage-')} | {fp32:.2f} | {mixed:.2f} | {delta:+.2f} |")
verdict = "dry run: reported, not checked" if dry else ("DIFFER: " + ", ".join(bad) if bad else "agree")
print(f"\ngoal: within 0.5 points ({verdict})")
sys.exit(0 if dry or not bad else 1)
EOF
  local rc=$?
  cat "$WORK/two_stage.md"
  return $rc
}

say "owp gpu_check ($([[ $CPU -eq 1 ]] && echo 'CPU dry run' || echo GPU)) in $REPO -> $OUT_DIR"
say "== install"
if install >>"$LOG" 2>&1; then
  echo "| install | ok | $SECONDS |" >>"$STEPS"
  tail -1 "$LOG"
  step "data" 120 prepare_data
  if [[ $CPU -eq 1 ]]; then
    data_sets=(--set "data.train=$WORK/synth" --set "data.val=$WORK/synth")
  fi
  step "CUDA tests" 180 "$PY" -m pytest tests/engine/test_cuda.py -q -rs -p no:cacheprovider
  step "DDP: torchrun, 1 process, $DDP_ITERS iterations" 120 ddp_run
  step "owp bench" 240 bench
  step "train fp32" 120 parity_run none
  step "train bf16" 120 parity_run bf16
  [[ -f "$WORK/parity-none/eval/metrics.json" && -f "$WORK/parity-bf16/eval/metrics.json" ]] &&
    step "AR@100 fp32 vs bf16" 60 compare_ar
  for preset in synth-rpn synth-oln synth-double-head; do
    step "two-stage $preset: bf16 train, fp32 vs bf16 eval" "$TWO_STAGE_CAP" two_stage_run "$preset"
  done
  step "two-stage AR@100 fp32 vs bf16 eval" 30 compare_two_stage
else
  echo "| install | FAILED | $SECONDS |" >>"$STEPS"
  say "   install FAILED; see $LOG"
  FAILED=1
fi

{
  echo "# owp gpu_check ($([[ $CPU -eq 1 ]] && echo 'CPU dry run, tiny sizes' || echo GPU))"
  echo
  "$PY" -c "import torch; print('torch', torch.__version__, '| device:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')" 2>/dev/null
  echo
  cat "$STEPS"
  echo
  [[ -f "$WORK/parity.md" ]] && cat "$WORK/parity.md" && echo
  [[ -f "$WORK/two_stage.md" ]] && cat "$WORK/two_stage.md" && echo
  [[ -f "$WORK/bench.txt" ]] && sed -n '/^Inference/,$p' "$WORK/bench.txt"
} >"$SUMMARY"
cat "$SUMMARY"
say "summary: $SUMMARY; log: $LOG; total ${SECONDS} s"
rm -rf "$WORK"
exit $FAILED
