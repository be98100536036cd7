#!/usr/bin/env bash
# Side-by-side training throughput of `srsnet bench --train seg` and PyTorch (eager, CPU) on the
# same lite segmentation-stage step (batch 8, 256², R's encoder frozen), in one run, as ratios.
# Needs PyTorch in a venv (PyPI's wheel; its CUDA libraries are not used):
#   python3 -m venv /tmp/ortenv && /tmp/ortenv/bin/pip install torch
# Run from the project root: benches/train-peer.sh [THREADS] [STEPS] [PAIRS]
set -euo pipefail
threads=${1:-2}
steps=${2:-3}
pairs=${3:-3}
py=${TORCH_PYTHON:-/tmp/ortenv/bin/python}
bin=target/release/srsnet
[ -x "$bin" ] || cargo build --release --quiet
echo "| pair | srsnet images/s | PyTorch images/s | ratio (ours / PyTorch) |"
echo "|---|---|---|---|"
for i in $(seq "$pairs"); do
  # Alternate the two so that drifting load hits both alike.
  ours=$("$bin" bench --train seg --preset lite --batch 8 --size 256 --threads "$threads" --warmup 1 \
    --iters "$steps" 2>/dev/null | sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p' | head -1)
  torch=$("$py" benches/torch_train_peer.py --threads "$threads" --batch 8 --size 256 --steps "$steps" |
    python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["images_per_s"])')
  ratio=$(python3 -c "print(f'{$ours / $torch:.2f}')")
  echo "| $i | $ours | $torch | $ratio× |"
done
