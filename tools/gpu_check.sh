#!/usr/bin/env bash
# On a machine with one GPU, in one call: the training step's speed (CHECKS=speed, #35) and the CUDA
# paths of the command line (CHECKS=paths), or both (CHECKS=all, the default; about 11 minutes on an H200).
#   speed: CUDA graphs against eager steps (tools/graph_check.py, fp32 and bf16), a run with
#          cuda_graphs=true, `pggan bench` at the paper widths up to 1024 with the v2 batches (eager and
#          graphs a row), and the projected length of celebahq-1024-v2 (`--project-run`), also at the
#          batches auto_batch raises it to (`--auto-batch`); where peer/ holds pro-gan-pth (a device run
#          carries it; `make peer` fetches it), its step beside ours at 4-32 (paper widths: ours as train
#          runs them, bf16; reference network: both fp32).
#   paths: training in fp32/fp16, kill -9 and --resume, generate and metrics, auto_batch, a budgeted run
#          on real images, torch.compile.
# Each step runs under its own time limit and the script goes on after a failure; every step's output
# goes to OUT/log.txt, one line a step (exit code, seconds) to OUT/summary.txt, the tables to OUT/*.txt.
#
#   bash tools/gpu_check.sh OUT [DATASET32]     # DATASET32: e.g. emoji/ds32 (tools/build_emoji_set.py)
#
# Needs only PyTorch with CUDA, numpy, Pillow, click, tqdm and safetensors: pggan runs from src/, nothing
# is installed. DEVICE=cpu (and a short BUDGET, default 3m) runs the same steps on a CPU, to check the script
# itself (the graph steps then replay through graph_check's mock). Every step should end with rc=0 but
# `kill`, which is killed on purpose (rc=137).
set -u
out=${1:?usage: gpu_check.sh OUT [DATASET32]}
data=${2:-}
device=${DEVICE:-cuda}
budget=${BUDGET:-3m}
checks=${CHECKS:-all}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PGGAN_DEBUG=1
py=${PYTHON:-python3}
pg=("$py" -m pggan)
train=("$py" -m pggan train --device "$device" --no-progress)

step() {    # step NAME SECONDS CMD...: run CMD with a time limit, log it, record its exit code
  local name=$1 limit=$2 start rc
  shift 2
  echo "=== $name: $*" >>"$out/log.txt"
  start=$(date +%s)
  timeout -k 5 "$limit" "$@" >>"$out/log.txt" 2>&1
  rc=$?
  echo "$name rc=$rc $(( $(date +%s) - start ))s" | tee -a "$out/summary.txt"
}

step info 60 bash -c "nvidia-smi -L 2>/dev/null; $py -c 'import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))'"

want() { [ "$checks" = all ] || [ "$checks" = "$1" ]; }

table() {    # table NAME: step NAME's output, from the log, as OUT/NAME.txt
  awk -v s="=== $1:" 'index($0, s) == 1 {f = 1; next} /^=== / {f = 0} f' "$out/log.txt" >"$out/$1.txt"
}

if want speed; then
  # on a CPU (to check this script): fp32 only, graphs mocked, small sizes
  if [ "$device" = cuda ]; then precs=fp32,bf16 mock=() max_res=1024 preset=celebahq-1024-v2 prec1=bf16 peer_res=4,8,16,32
  else precs=fp32 mock=(--mock) max_res=8 preset=cpu-small prec1=fp32 peer_res=4; fi
  step graphs 240 "$py" tools/graph_check.py --device "$device" "${mock[@]}" --precision "$precs" --json "$out/graphs.json"
  table graphs
  step train-graphs 120 "${train[@]}" --outdir "$work/graphs" --desc graphs --kimg 4 --set cuda_graphs=true
  step graphs-in-log 10 grep -h "cuda_graphs\|CUDA graph captured" "$work"/graphs/*/log.txt
  step bench 240 "${pg[@]}" bench --device "$device" --precision "$precs" --paper-max-res "$max_res" \
    --resolutions 4,8,32 --seconds 1 --json "$out/bench.json"
  table bench
  step project 150 "${pg[@]}" bench --device "$device" --precision "$prec1" --project-run "$preset" --seconds 1 \
    --json "$out/project.json"
  table project
  if [ -d peer/pro_gan_pytorch ]; then      # the peer's step on the same device (tools/peer_bench.py)
    # the paper's widths as a user's pggan train runs them (auto: bf16 on a GPU), the reference network fp32 as the peer
    for spec in paper:auto reference:fp32; do
      net=${spec%%:*}
      step "peer-$net" 150 "$py" tools/peer_bench.py --peer peer --device "$device" --network "$net" \
        --precision "${spec##*:}" --resolutions "$peer_res" --seconds 1 --json "$out/peer-$net.json"
      table "peer-$net"
    done
  fi
  step project-auto-batch 200 "${pg[@]}" bench --device "$device" --precision "$prec1" --project-run "$preset" \
    --auto-batch --seconds 1 --json "$out/project-auto-batch.json"
  table project-auto-batch
fi
want paths || exit 0

# plain training in the three precisions, cpu-small on the built-in shapes (conditional on their labels in fp16)
step fp32 90 "${train[@]}" --outdir "$work/runs" --desc fp32 --precision fp32 --kimg 4
step fp16-conditional 90 "${train[@]}" --outdir "$work/runs" --desc fp16 --precision fp16 --kimg 4 --set conditional=true

# kill -9 in the middle of an auto-precision run, then continue it from its newest checkpoint
step kill 60 timeout -s KILL 20 "${train[@]}" --outdir "$work/kill" \
  --kimg 60 --set checkpoint_kimg=2 --set image_kimg=10
step resume 120 "${train[@]}" --outdir "$work/kill" --resume latest
step resumed-to-end 10 bash -c "ls $work/kill/*/ && test -f $work/kill/*/generator-final.safetensors"

net=$(ls "$work"/kill/*/generator-final.safetensors 2>/dev/null | head -n 1)
step generate 60 "${pg[@]}" generate --network "${net:-missing}" --seeds 0-63 --grid --device "$device" --outdir "$work/gen"
step metrics 120 "${pg[@]}" metrics --network "${net:-missing}" --data builtin:shapes --num 1024 --pairs 1000 --device "$device"

# the largest batch that fits, probed per resolution, with section 6.1's 128x128 network
step auto_batch 120 "${train[@]}" --outdir "$work/runs" --desc autobatch --preset lowcap-128 --resolution 128 \
  --set sched.auto_batch=true --kimg 1

# a budgeted run on real images: the planner on this device (which width does it pick?) and its SWD
if [ -n "$data" ]; then
  step budget 400 "$py" tools/quality_budget.py --data "$data" --resolution 32 --budget "$budget" --swd-repeats 1 --outdir "$work/q"
  cp "$work"/q/0*/quality.png "$work"/q/quality.jsonl "$out/" 2>/dev/null
  cp "$work"/q/0*/log.txt "$out/budget-run-log.txt" 2>/dev/null
fi

step compile 100 "${train[@]}" --outdir "$work/runs" --desc compile --set compile=true --kimg 2
cat "$out/summary.txt"
