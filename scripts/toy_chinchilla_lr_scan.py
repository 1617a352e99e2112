"""The learning-rate scan behind the toy-Chinchilla sweep's rate per size (chapters/10-scaling-laws.md).

Stage `scan`: at one budget, every size of a wide ladder at four learning rates, one seed.
Stage `check`: at a budget 8x smaller, three sizes at the rate the fitted rule gives them and at
half and double that rate. Rows go to results/toy-chinchilla-lr-scan.jsonl (resumable, like any
sweep); `minichinchilla.scaling.design.fit_lr_rule` fits log lr_opt against log N.

    nice -n 19 python scripts/toy_chinchilla_lr_scan.py scan [--workers 2]
    nice -n 19 python scripts/toy_chinchilla_lr_scan.py check [--workers 2]
"""
import argparse
import sys

from minichinchilla.scaling.sweep import RunSpec, lr_for, run_sweep

OUT = "results/toy-chinchilla-lr-scan.jsonl"
SCAN_BUDGET = 2e11
SCAN_SHAPES = ((12, 1, 2), (16, 2, 2), (24, 2, 2), (32, 2, 2), (40, 3, 2), (48, 3, 4), (64, 3, 4))
SCAN_LRS = (2e-3, 4e-3, 8e-3, 1.6e-2)
LOW_LR = 1e-3  # added for the three largest sizes, whose best rate was at or near 2e-3
CHECK_BUDGET = 2.5e10
CHECK_SHAPES = ((12, 1, 2), (16, 2, 2), (24, 2, 2))


def scan_specs():
    specs = [RunSpec(SCAN_BUDGET, d, L, h, lr=lr) for d, L, h in SCAN_SHAPES for lr in SCAN_LRS]
    return specs + [RunSpec(SCAN_BUDGET, d, L, h, lr=LOW_LR) for d, L, h in SCAN_SHAPES[-3:]]


def check_specs():
    specs = []
    for d, L, h in CHECK_SHAPES:
        base = RunSpec(CHECK_BUDGET, d, L, h, lr=0.0)
        rate = lr_for(base.params().total)
        specs += [RunSpec(CHECK_BUDGET, d, L, h, lr=float(f"{rate * f:.3g}")) for f in (0.5, 1, 2)]
    return specs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=["scan", "check"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--executor", default="dask", choices=["process", "dask"])
    args = p.parse_args(argv)
    specs = scan_specs() if args.stage == "scan" else check_specs()
    rows = run_sweep(specs, OUT, executor=args.executor, workers=args.workers)
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
