"""``pixelgroup analyze {gradient,capacity}``: the studies of docs/studies.md."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

# the library (and torch) is imported inside the run functions, so --help stays fast

GRADIENT_EPILOG = """examples:
  pixelgroup analyze gradient --output-dir docs/figures/studies
  pixelgroup analyze gradient --loops 0 5 --points-per-cluster 300 --seed 1 --output-dir /tmp/g
  pixelgroup analyze gradient --loops 3 --bandwidth 0.2 --steps 50 --no-figures

For each K it prints the measured conclusion (modes after clustering, fraction of points whose
mode has their label / lands on it, spread of the moved group, shift of the settled cluster),
for the updates through K loops and for the control (K loss sites on the raw points), and
writes gradient_K<k>_summary.png and gradient_K<k>_trajectories.png."""

CAPACITY_EPILOG = """examples:
  pixelgroup analyze capacity --dim 3 --margin 0.5
  pixelgroup analyze capacity --dim 64 --margin 0.5 --groups 21
  pixelgroup analyze capacity --dim 2 3 4 8 --margin 0.1 0.25 0.5 0.6 0.75 --figure cap.png

The margin is the calibrated α of the pair loss: different groups need (1 + cos)/2 <= α.
'exact' is the proven maximum (α <= 0.5, or D = 2), 'upper' the best bound (degree-2 LP /
Levenshtein L_2, cap packing), 'packed' the largest n the optimiser separated (a lower bound,
capped at --max-groups)."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="studies: gradient through mean shift, embedding dimension vs margin",
        description="The studies of the method: `gradient` (1-D gradient through recurrent "
        "mean shift) and `capacity` (how many groups fit in D dimensions at margin α).",
        epilog="Run `pixelgroup analyze <study> --help` for examples.",
    )
    studies = p.add_subparsers(dest="study", metavar="<study>", required=True)
    _add_gradient(studies)
    _add_capacity(studies)


def _add_gradient(studies: argparse._SubParsersAction) -> None:
    g = studies.add_parser(
        "gradient",
        help="1-D study of the gradient through K GBMS loops (three Gaussians, fixed regressor)",
        description="Optimise 1-D points by gradient descent through K Euclidean GBMS loops "
        "and measure whether the result clusters into correctly labelled modes.",
        epilog=GRADIENT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g.add_argument("--loops", type=int, nargs="+", default=[0, 3, 5, 7], help="K values")
    g.add_argument("--bandwidth", type=float, default=0.1, help="δ of the loops (0.1)")
    g.add_argument("--steps", type=int, default=30, help="gradient updates of the points (30)")
    g.add_argument("--lr", type=float, default=0.1, help="update x -= lr * N * dL/dx (0.1)")
    g.add_argument("--points-per-cluster", type=int, default=1000, help="(1000; N = 3x)")
    g.add_argument("--seed", type=int, default=0, help="seed of the data and the plotted points")
    g.add_argument("--device", default="cpu", help="torch device (cpu)")
    g.add_argument("--output-dir", type=Path, default=Path("studies"), help="figure folder")
    g.add_argument("--no-figures", action="store_true", help="only print the measurements")
    g.set_defaults(run=run_gradient)


def _add_capacity(studies: argparse._SubParsersAction) -> None:
    c = studies.add_parser(
        "capacity",
        help="how many groups an embedding of dimension D separates with margin α",
        description="Exact answers, bounds and numerical sphere packings for the number of "
        "groups that can be pairwise separated with calibrated margin α in D dimensions.",
        epilog=CAPACITY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("--dim", type=int, nargs="+", required=True, help="embedding dimension(s) D")
    c.add_argument("--margin", type=float, nargs="+", required=True, help="calibrated α in [0,1]")
    c.add_argument("--groups", type=int, help="also report the best margin for N groups")
    c.add_argument("--bandwidth", type=float, nargs="+", default=[0.1, 0.2, 0.5], help="δ list")
    c.add_argument("--max-groups", type=int, default=256, help="cap of the packing search")
    c.add_argument("--restarts", type=int, default=4, help="random starts per packing (4)")
    c.add_argument("--steps", type=int, default=400, help="optimiser steps per packing (400)")
    c.add_argument("--seed", type=int, default=0, help="seed of the packings")
    c.add_argument("--figure", type=Path, help="write the feasible (D, α, n) plot to this PNG")
    c.set_defaults(run=run_capacity)


def run_gradient(args: argparse.Namespace) -> int:
    from pixelgroup.analysis.gradient import run_gradient_studies

    if not args.no_figures:
        from pixelgroup.cli.paths import check_writable_dir

        check_writable_dir(args.output_dir, "--output-dir")  # before the study, not after
    runs = [(k, True) for k in args.loops] + [(k, False) for k in args.loops if k > 0]
    if not args.no_figures and 0 not in args.loops:
        runs.append((0, True))  # the "without mean shift" panel of every summary
    results = run_gradient_studies(
        runs,
        points_per_cluster=args.points_per_cluster,
        bandwidth=args.bandwidth,
        steps=args.steps,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        progress=True,
    )
    n = 3 * args.points_per_cluster
    print(
        f"gradient study: N = {n}, δ = {args.bandwidth:g}, {args.steps} updates, seed {args.seed}"
    )
    print("modes: after 5 GBMS steps (δ = 0.2) of the updated points; correct: the point's mode")
    print("maps to its label's class; on target: |ŷ(mode) − y| <= 0.025; group std: spread of")
    print("the moved middle cluster (class 2); settled shift: mean |Δx| of the cluster at 5.")
    print(
        f"{'K':>2} {'loss on':<12} {'modes':>5}  {'mode positions':<22} {'correct':>7} "
        f"{'on target':>9} {'group std':>9} {'settled shift':>13}"
    )
    for (k, through), r in sorted(results.items(), key=lambda kv: (kv[0][0], not kv[0][1])):
        if k not in args.loops:
            continue
        where = "raw points" if k == 0 else ("GBMS loops" if through else "control")
        modes = ", ".join(f"{m:.3f}" for m in r.modes[:4].tolist()) + (
            " …" if r.num_modes > 4 else ""
        )
        print(
            f"{k:>2} {where:<12} {r.num_modes:>5}  {modes:<22} {r.correct_fraction:>7.3f} "
            f"{r.on_target_fraction:>9.3f} {r.group_std:>9.3f} {r.settled_shift:>13.3f}"
        )
    if not args.no_figures:
        from pixelgroup.analysis.plots import plot_gradient_summary, plot_trajectories

        for k in args.loops:
            r = results[k, True]
            out = args.output_dir
            plot_gradient_summary(r, results[0, True], out / f"gradient_K{k}_summary.png")
            plot_trajectories(r, out / f"gradient_K{k}_trajectories.png", seed=args.seed)
        print(f"figures written to {args.output_dir}/gradient_K*_{{summary,trajectories}}.png")
    return 0


def _fmt_count(value: float | int | None, cap: int | None = None) -> str:
    """A group count: '?' unknown, '-' no bound, real bounds floored (n is an integer)."""
    if value is None or value == math.inf:
        return "?" if value is None else "-"
    value = math.floor(value + 1e-9)
    text = f"{value}" if value < 1e6 else f"{value:.1e}"
    return f">={text}" if cap is not None and value >= cap else text


def _feasible(groups: int, dim: int, margin: float, packed: float) -> str:
    from pixelgroup.analysis.capacity import exact_max_groups

    """'yes'/'no' where the answer is known exactly, else what the packing showed."""
    exact = exact_max_groups(dim, margin)
    if exact is not None:
        return "yes" if groups <= exact else "no"
    return "yes (packed)" if packed <= margin + 1e-3 else "not found by packing"


def run_capacity(args: argparse.Namespace) -> int:
    import torch

    from pixelgroup.analysis.capacity import (
        cap_packing_upper_bound,
        capacity_table,
        kernel_weight_at_margin,
        lp_upper_bound,
        min_feasible_margin,
        pack_sphere,
    )

    # the closed-form numbers first: the library checks α, δ and n before any packing
    weights = {
        a: " ".join(f"{kernel_weight_at_margin(a, b):>10.2e}" for b in args.bandwidth)
        for a in args.margin
    }
    exact = {d: min_feasible_margin(args.groups, d) for d in args.dim if args.groups is not None}
    if args.figure is not None:
        from pixelgroup.cli.paths import check_writable_file

        check_writable_file(args.figure, "--figure", overwrite=True)  # before the packing
    generator = torch.Generator().manual_seed(args.seed)
    rows = capacity_table(
        args.dim,
        args.margin,
        max_groups=args.max_groups,
        restarts=args.restarts,
        steps=args.steps,
        generator=generator,
        progress=True,
    )
    header = " ".join(f"{'w(δ=' + format(b, 'g') + ')':>10}" for b in args.bandwidth)
    print(
        f"{'D':>4} {'α':>5} {'cos<=':>6} {'angle>=':>7} {'exact':>6} {'LP L2':>7} "
        f"{'caps':>8} {'packed':>7} {'min angle':>9} {header}"
    )
    for r in rows:
        angle = math.degrees(math.acos(r.cosine))
        ws = weights[r.margin]
        print(
            f"{r.dim:>4} {r.margin:>5.3g} {r.cosine:>6.3f} {angle:>7.1f} "
            f"{_fmt_count(r.exact):>6} {_fmt_count(lp_upper_bound(r.dim, r.margin)):>7} "
            f"{_fmt_count(cap_packing_upper_bound(r.dim, r.margin)):>8} "
            f"{_fmt_count(r.empirical, args.max_groups):>7} {r.min_angle_deg:>8.2f}° {ws}"
        )
    print("w(δ): GBMS kernel weight exp((cos − 1)/δ²) between two groups exactly at the margin.")
    if args.groups is not None:
        n = args.groups
        for d in args.dim:
            packing = pack_sphere(
                n, d, restarts=args.restarts, steps=args.steps, generator=generator
            )
            known = "unknown (> 0.5)" if math.isnan(exact[d]) else f"{exact[d]:.4f}"
            verdicts = ", ".join(
                f"{a:g}: {_feasible(n, d, a, packing.margin)}" for a in args.margin
            )
            print(
                f"{n} groups in D = {d}: smallest feasible α {known}; packed α "
                f"{packing.margin:.4f} (cos {packing.max_cosine:.4f}, min angle "
                f"{packing.min_angle_deg:.2f}°); feasible at α = {verdicts}"
            )
    if args.figure is not None:
        from pixelgroup.analysis.plots import plot_capacity

        print(f"figure written to {plot_capacity(rows, args.figure)}")
    return 0
