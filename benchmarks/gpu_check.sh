#!/usr/bin/env bash
# GPU readiness (issue 17), never run as a test: on a machine with a CUDA device, from the
# repository root,
#     bash benchmarks/gpu_check.sh [OUT]          (default OUT: runs/gpu_check)
# runs, in order, writing everything under OUT:
#   1. tests/gpu (pytest -m gpu): tiled / sdpa / dense GBMS on CUDA in float32, bfloat16 and
#      float16 against a float64 reference, autocast training of the VOC instance recipe, DDP
#      over NCCL with one process, per-image BatchNorm on CUDA; measured errors in
#      OUT/cuda_tests.json;
#   2. the GBMS bench on CUDA (pixelgroup bench --device cuda --sections gbms);
#   3. one training step at 512 x 512, batch 8, T = 5 loops (benchmarks/gpu_train_step.py):
#      seconds per step and peak memory, without autocast and with bf16 / fp16;
#   4. the full-size dress rehearsal of the four paper recipes on CUDA (pixelgroup rehearse).
# Put the tables it prints into docs/benchmarks.md and docs/rehearsal.md with the GPU's name.
set -euo pipefail
OUT=${1:-runs/gpu_check}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check.sh: no CUDA device visible to torch; nothing to check" >&2
    exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt" || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
    | tee -a "$OUT/gpu.txt"

failed=()  # a failing step is reported at the end; the later steps still run

echo "== 1. CUDA tests"
PIXELGROUP_GPU_REPORT="$OUT/cuda_tests.json" "$PY" -m pytest -q -m gpu tests/gpu -rs \
    -p no:cacheprovider 2>&1 | tee "$OUT/tests.txt" || failed+=("tests")

echo "== 2. GBMS bench on CUDA"
"$PY" -m pixelgroup bench --device cuda --sections gbms --sizes 4096 16384 65536 \
    --dims 8 32 64 --impls tiled sdpa dense --out "$OUT/gbms_cuda.md" || failed+=("bench")
"$PY" -m pixelgroup bench --device cuda --sections gbms --sizes 262144 --dims 32 --batch 8 \
    --impls sdpa --out "$OUT/gbms_cuda_large.md" || failed+=("bench (N = 262,144)")

echo "== 3. training step 512 x 512, batch 8, T = 5"
"$PY" benchmarks/gpu_train_step.py --size 512 --batch 8 --loops 5 \
    --out "$OUT/train_step.json" | tee "$OUT/train_step.md" || failed+=("training step")

echo "== 4. full-size rehearsal of the paper recipes on CUDA"
"$PY" -m pixelgroup rehearse --size full --iters 5 --device cuda --quiet \
    --no-keep-checkpoints -o "$OUT/rehearsal" | tee "$OUT/rehearsal.md" || failed+=("rehearsal")

if ((${#failed[@]})); then
    echo "gpu_check.sh: FAILED: ${failed[*]} (results in $OUT)" >&2
    exit 1
fi
echo "gpu_check.sh: done; results in $OUT"
