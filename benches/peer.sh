#!/usr/bin/env bash
# Side-by-side latency of `srsnet bench` (CPU plan) and ONNX Runtime on the same networks and
# sizes, in one run, as ratios (the machines are shared and noisy: only a ratio measured side by
# side means anything). Needs ONNX Runtime in a venv:
#   python3 -m venv /tmp/ortenv && /tmp/ortenv/bin/pip install onnxruntime numpy
# Run from the project root: benches/peer.sh [THREADS] [ITERS]
set -euo pipefail
threads=${1:-2}
iters=${2:-10}
peers=../shared/peers
py=${ORT_PYTHON:-/tmp/ortenv/bin/python}
bin=target/release/srsnet
[ -x "$bin" ] || cargo build --release --quiet
echo "| work | srsnet plan p50 ms | ONNX Runtime median ms | ratio |"
echo "|---|---|---|---|"
for case in lite_256x256:lite:256 lite_512x640:lite:640x512 official_256x256:official:256; do
  IFS=: read -r onnx preset size <<<"$case"
  # Alternate the two so that drifting load hits both alike.
  ort=$("$py" "$peers/ort_bench.py" --threads "$threads" --iters "$iters" "$peers/$onnx.onnx" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["median_ms"])')
  ours=$("$bin" bench --preset "$preset" --size "$size" --threads "$threads" --iters "$iters" 2>/dev/null |
    sed -n 's/.* p50 \([0-9.]*\) ms.*/\1/p' | head -1)
  ratio=$(python3 -c "print(f'{$ours / $ort:.2f}')")
  echo "| $preset $size | $ours | $ort | $ratio× |"
done
