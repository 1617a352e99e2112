#!/usr/bin/env bash
# The book on its own: install its tools, build it, run its browser test.
# Usage (from the repository root, as root on Debian): bash scripts/ci_book.sh [--no-install]
#   - pip: requirements-docs.txt (Sphinx + MyST-NB + sphinx-book-theme, MathJax 3, Selenium)
#   - apt: chromium + chromium-driver for the browser test (libjs-mathjax is an optional
#     fallback MathJax 2 used only when django-static-mathjax is not installed)
# The site lands in _build/book/, the screenshots in _build/artifacts/.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
if [ "${1:-}" != "--no-install" ]; then
  python -m pip install -q -r requirements-docs.txt || { echo "pip install of requirements-docs.txt failed"; exit 1; }
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "chromium not installed: the browser test will skip"
  fi
  echo "=== book installs took $((SECONDS - start)) s"
fi
t=$SECONDS
python -m minichinchilla.book build || exit 1
echo "=== book build took $((SECONDS - t)) s"
t=$SECONDS
python -m pytest tests/test_book.py -q -rs
rc=$?
echo "=== book test took $((SECONDS - t)) s (exit $rc); total $((SECONDS - start)) s"
exit $rc
