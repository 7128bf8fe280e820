#!/usr/bin/env bash
# The runs behind docs/benchmarks.md (never run as tests). Each writes one Markdown table set;
# rows within a table are measured side by side in one process. Run from the repository root.
# --threads 1: on a shared, oversubscribed machine every OpenMP parallel region waits for a
# descheduled thread, which swamps the kernels being compared.
set -euo pipefail
OUT=${OUT:-runs/bench}
mkdir -p "$OUT"
PG=".venv/bin/python -m pixelgroup"
# the original's GBMS fixture, read by the toy rows of `grouping` and by `merge`
TOY=../shared/data/toy-gbms/loops_bandwidth0.2.mat
$PG bench --sections gbms --sizes 4096 16384 --dims 8 32 64 --impls tiled sdpa dense --threads 1 \
    --out "$OUT/gbms_small.md"
$PG bench --sections gbms --sizes 65536 --dims 32 --impls tiled sdpa --threads 1 \
    --out "$OUT/gbms_65536.md"
$PG bench --sections gbms --sizes 65536 --dims 8 64 --impls tiled sdpa --threads 1 \
    --out "$OUT/gbms_65536_d8_d64.md"
$PG bench --sections grouping --threads 1 --toy "$TOY" --out "$OUT/grouping.md"
$PG bench --sections merge --threads 1 --toy "$TOY" --out "$OUT/merge.md"
for threads in 1 2; do
    $PG bench --sections gbms --sizes 4096 --dims 3 --impls tiled sdpa --threads "$threads" \
        --out "$OUT/gbms_d3_threads$threads.md"
done
# the small-D layout of issue 18 against the layout before it (docs/benchmarks.md §1.5)
git show 2db30b9:pixelgroup/ops/tiled_gbms.py > "$OUT/tiled_gbms_before_issue18.py"
OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gbms_small_dim.py \
    "$OUT/tiled_gbms_before_issue18.py" --sizes 4096 16384 --dims 3 8 --repeats 5 \
    > "$OUT/gbms_small_dim.md"
