#!/usr/bin/env bash
# The committed toy-Chinchilla sweep, budget by budget from the cheapest, through the Dask
# executor (a 2-worker LocalCluster), at the lowest CPU priority. Resumable: run it again and
# finished runs are skipped. Log: .sweeplogs/sweep.log when started as in README.md.
#   setsid nohup nice -n 19 bash scripts/toy_chinchilla_run.sh > .sweeplogs/sweep.log 2>&1 < /dev/null &
set -euo pipefail
cd "$(dirname "$0")/.."
export OPENBLAS_NUM_THREADS=1 MPLBACKEND=Agg
python scripts/toy_chinchilla_lr_scan.py scan --workers 2      # the LR scan at 2e11 (resumes)
python scripts/toy_chinchilla_lr_scan.py check --workers 2     # the rule checked at 2.5e10
for C in 1.25e10 2.5e10 5e10 1e11 2e11; do
  python -m minichinchilla scaling sweep --executor dask --workers 2 --budgets "$C" \
    --out results/toy-chinchilla.jsonl
  echo "=== budget $C done $(date +%H:%M:%S)"
done
# the two largest budgets one seed at a time, so that a session cut short still has every size once
for C in 4e11 8e11; do
  for S in 0 1; do
    python -m minichinchilla scaling sweep --executor dask --workers 2 --budgets "$C" --seeds "$S" \
      --out results/toy-chinchilla.jsonl
    echo "=== budget $C seed $S done $(date +%H:%M:%S)"
  done
done
