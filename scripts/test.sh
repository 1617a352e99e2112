#!/usr/bin/env bash
# The whole test suite, in timed phases: unit tests, notebooks under nbval, the book.
# Usage (from the repository root): bash scripts/test.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export MPLBACKEND=Agg PYTHONHASHSEED=0 OPENBLAS_THREAD_TIMEOUT=1
# One BLAS thread: the tests' matrices are small, and several processes (notebook kernels, the
# grader's kernels, sweep workers) run at once; oversubscribed OpenBLAS threads slow them 10x.
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
status=0

phase() {  # phase NAME CMD... ; pytest's exit 5 ("collected nothing") counts as a pass
  local name=$1; shift
  local start=$SECONDS
  echo "=== phase: $name"
  "$@"
  local rc=$?
  if [ $rc -eq 5 ]; then echo "($name: nothing collected)"; rc=0; fi
  echo "=== phase: $name took $((SECONDS - start)) s (exit $rc)"
  [ $rc -eq 0 ] || status=1
}

phase "unit tests" python -m pytest tests --ignore=tests/test_book.py --durations=15 -q
phase "notebooks (nbval)" python -m pytest --nbval --nbval-current-env \
  --nbval-sanitize-with notebooks/sanitize.cfg --durations=15 -q -p no:randomly notebooks
if [ -f tests/test_book.py ]; then
  phase "book build + browser test" python -m pytest tests/test_book.py -q -rs
fi
exit $status
