"""Peak memory and time of one exported graph (ONNX) in onnxruntime, per image size.

Each size runs in a fresh process (peak RSS by ``getrusage`` is per process), batch 1, one
thread, random input; ``shifted`` is checked for NaN. The table in docs/export.md came from

    pixelgroup export --checkpoint CKPT --format onnx -o default.onnx --num-iters 5
    pixelgroup export --checkpoint CKPT --format onnx -o s1.onnx --num-iters 5 --stride 1
    python benchmarks/export_memory.py s1.onnx 128
    python benchmarks/export_memory.py default.onnx 128 256 512 1024
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time


def _one(path: str, side: int) -> None:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options)
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    images = np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32)
    start = time.perf_counter()
    shifted = session.run(None, {session.get_inputs()[0].name: images})[0]
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{side} x {side}: shifted {tuple(shifted.shape)}, NaN {bool(np.isnan(shifted).any())}, "
        f"{seconds:.2f} s, peak RSS {peak:.0f} MiB (after loading {loaded:.0f} MiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx")
    parser.add_argument("sides", type=int, nargs="+", help="image sides to run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _one(args.onnx, args.sides[0])
        return
    for side in args.sides:
        subprocess.run([sys.executable, __file__, args.onnx, str(side), "--child"], check=True)


if __name__ == "__main__":
    main()
