#!/usr/bin/env bash
# The test command: install, then the whole suite (the e2e-marked tests included).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh || exit 1
# Headless Chromium for the UI test (polydag_tests/ops/test_ui_browser.py); without it that
# test skips with the reason. Idempotent, quiet, and never fatal.
command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || true
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
# Two workers, one test file each (--dist loadfile keeps a module's fixtures in one process):
# heavy work runs with one torch thread on small machines, so two files use both cores.
# POLYDAG_TEST_WORKERS=0 runs in one process.
python3 -m pytest -n "${POLYDAG_TEST_WORKERS:-2}" --dist loadfile "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  # pytest exits 5 when it collected no tests; for this suite that is a broken selection or
  # collection, never a pass.
  echo "scripts/test.sh: pytest collected no tests (exit 5); failing on purpose" >&2
  exit 1
fi
exit "$rc"
