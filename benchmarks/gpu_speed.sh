#!/usr/bin/env bash
# The GPU job behind README's "Speed" table, in one call, with a deadline (first argument, seconds;
# default 540): this project's ResNet-50 in bfloat16 at batch 256 and 512 beside the peers of
# ../shared/bench/peers_gpu.py (plain Flax NNX, torch.compile, the bf16 matmul roof) on the same
# card, time to the first step cold and restarted with the compilation cache, then VGG-16,
# GoogLeNet and Inception-ResNet-v2 at batch 256 for their FLOP rates. Parts that would pass the
# deadline are skipped, so the summary always prints.
#
#   bash ../shared/bench/prepare_device.sh          # on the CPU machine: .device-overlay/
#   OUT=/tmp/speed bash benchmarks/gpu_speed.sh     # on the GPU machine, from the project root
#
# Figures go to $OUT (results.jsonl, peers.jsonl, log, stderr, the profiled steps' trace); the
# summary table is printed last.
set -uo pipefail
deadline=${1:-540}
OUT=${OUT:-/tmp/speed}
mkdir -p "$OUT"
export PYTHONPATH=.device-overlay${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
cache=$(mktemp -d)
SMOKE=${SMOKE:-}  # Flags appended to every run: a CPU dry run of this script, e.g. tiny images.

# Runs "$@" under a limit of $1 seconds, cut to what is left before the deadline.
bounded() {
  local limit=$1 left=$((deadline - SECONDS - 5))
  shift
  if ((left < 20)); then echo "skipped (deadline): $*" | tee -a "$OUT/log"; return; fi
  timeout $((limit < left ? limit : left)) "$@" 2>>"$OUT/stderr" | tee -a "$OUT/log"
}
ours() {  # name, limit, benchmark flags (--config=... first)
  local name=$1 limit=$2
  shift 2
  bounded "$limit" python -m benchmarks.train_throughput "$@" --config.dtype=bfloat16 \
    --json="$OUT/$name.json" $SMOKE
}
peer() {  # part, batch, limit
  BATCH=$2 PEERS_OUT=$OUT/peers.jsonl bounded "$3" python .device-overlay/peers_gpu.py "$1"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv \
  | tee "$OUT/log"
python -c 'import jax, flax; print("jax", jax.__version__, "flax", flax.__version__, jax.devices())' \
  | tee -a "$OUT/log"
r50=(--config=configs/resnet50.py)
# Rounds of 60 and 30 steps: each round is an epoch of the framework's loop, whose start (the
# first batch made on the host while the device waits) 20-step rounds did not amortise.
ours resnet50_b256 150 "${r50[@]}" --config.batch_size=256 --compilation_cache_dir="$cache" \
  --steps=60
peer nnx 256 90
ours resnet50_b256_restart 60 "${r50[@]}" --config.batch_size=256 --compilation_cache_dir="$cache" \
  --steps=5 --rounds=1 --nocompare
ours resnet50_b512 150 "${r50[@]}" --config.batch_size=512 --steps=30
peer nnx 512 90
peer roof 256 45
for model in vgg16 googlenet; do
  ours "${model}_b256" 120 --config="configs/$model.py" --config.batch_size=256 --steps=8 \
    --rounds=2 --nocompare
done
# The step's top operations; XLA's command buffers (CUDA graphs) are off here, else the trace names
# only whole graphs.
XLA_FLAGS=--xla_gpu_enable_command_buffer= bounded 90 python train.py "${r50[@]}" \
  --config.dataset=synthetic --config.dtype=bfloat16 --config.batch_size=256 \
  --config.synthetic_train_examples=4096 --config.num_epochs=1 --config.profile_steps='(10,13)' \
  --workdir="$OUT/profiled" --compilation_cache_dir="$cache" $SMOKE
bounded 30 python -m benchmarks.top_ops "$OUT/profiled" --top=25
cp "$(ls -t "$OUT"/profiled/profile/plugins/profile/*/*.trace.json.gz | head -1)" "$OUT/" 2>/dev/null
rm -rf "$OUT/profiled"
ours inception_resnet_v2_b256 150 --config=configs/inception_resnet_v2.py --config.batch_size=256 \
  --steps=8 --rounds=2 --nocompare
peer compile 256 200

python - "$OUT" <<'EOF'
import glob, json, os, sys
out = sys.argv[1]
print(f'\n{"run":<26}{"row":<36}{"img/s":>10}{"TFLOP/s":>9}{"1st step s":>11}{"compile s":>10}')
runs = {os.path.basename(p)[:-5]: json.load(open(p))
        for p in sorted(glob.glob(os.path.join(out, '*.json')))}
with open(os.path.join(out, 'results.jsonl'), 'a') as f:  # One file: the device returns few.
  f.writelines(json.dumps({'run': name, **r}) + '\n' for name, r in runs.items())
for name, r in runs.items():
  os.remove(os.path.join(out, name + '.json'))
  for row, rate in r['img_per_s'].items():
    print(f'{name:<26}{row:<36}{rate:>10,.0f}'
          f'{r["train_tflop_per_s"][row]:>9.1f}{r["time_to_first_step_s"]:>11.1f}'
          f'{r["compile_s"]:>10.1f}')
if os.path.exists(os.path.join(out, 'peers.jsonl')):
  for line in open(os.path.join(out, 'peers.jsonl')):
    print('peer', line.strip())
EOF
