#!/usr/bin/env bash
# The main command: install, then both workflows end to end on the embedded defaults.
#   1. polychromic sweep: reply pairs -> base model -> LoRA adapter per λ -> generations ->
#      metrics -> metrics_summary / comparison -> verdict (printed)
#   2. step importance: problems -> continuous-thought model -> per-problem ablations
#      (ranged, resumable runs) -> step_importance_summary (printed)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
source scripts/env.sh
STEP_PROBLEMS="${POLYDAG_STEP_PROBLEMS:-300}"
t0=$SECONDS
stage() { echo; echo "=== [$((SECONDS - t0))s] $*"; }

stage "λ × seed partitions"
polydag lambdas add 0.0 0.3 1.0 2.0
polydag seeds add ${POLYDAG_SEEDS:-0}
lambdas=$(polydag lambdas list); seeds=$(polydag seeds list)
# λ × seed partition keys read "<λ>|<seed>"; the range from the first to the last covers the grid
first="$(sed -n '1p' <<<"$lambdas")|$(sed -n '1p' <<<"$seeds")"
last="$(sed -n '$p' <<<"$lambdas")|$(sed -n '$p' <<<"$seeds")"

stage "datasets and base models"
dagster asset materialize -m polydag --select 'reply_pairs,base_model,problems,codi_model'

stage "LoRA adapters and generations for λ × seed ${first}...${last}"
dagster asset materialize -m polydag --select 'lora_checkpoints,generations' --partition-range "${first}...${last}"

stage "metrics and everything downstream"
dagster asset materialize -m polydag --select 'metrics*'
polydag verdict

stage "step-importance sweep over ${STEP_PROBLEMS} problems"
polydag sweep step-importance --max-problems "$STEP_PROBLEMS"
dagster asset materialize -m polydag --select step_importance_summary
polydag summary step-importance

stage "done: results in data/polydag.duckdb, UI: dagster dev -w workspace.yaml"
