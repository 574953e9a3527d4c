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
# the negative control of step importance (a CODI model whose thoughts are one constant vector)
# and its sweep over this many problems; 0 (the default) leaves it out: it costs a second CODI
# training and a second sweep, more than the 10-minute budget of the main command has left
CONTROL_PROBLEMS="${POLYDAG_CONTROL_PROBLEMS:-0}"
case "$CONTROL_PROBLEMS" in
  ''|*[!0-9]*) echo "POLYDAG_CONTROL_PROBLEMS must be a whole number of problems (0: no control), got '$CONTROL_PROBLEMS'" >&2; exit 2 ;;
esac
codi_assets="problems,codi_model"; control_sweep=""
if [ "$CONTROL_PROBLEMS" -gt 0 ]; then
  codi_assets="$codi_assets,codi_control_model"
  control_sweep="polydag sweep step-importance --control --max-problems '$CONTROL_PROBLEMS' && "
fi
t0=$SECONDS
stage() { echo; echo "=== [$((SECONDS - t0))s] $*"; }

stage "λ × seed partitions"
polydag lambdas add 0.0 0.3 1.0 2.0
polydag seeds add ${POLYDAG_SEEDS:-0 1}  # two seeds per λ; POLYDAG_SEEDS="0 1 2" for the verdict's seed-consistency test
lambdas=$(polydag lambdas list); seeds=$(polydag seeds list)
# λ × seed partition keys read "<λ>|<seed>"; the range from the first to the last covers the grid
first="$(sed -n '1p' <<<"$lambdas")|$(sed -n '1p' <<<"$seeds")"
last="$(sed -n '$p' <<<"$lambdas")|$(sed -n '$p' <<<"$seeds")"

# Two lanes: on a small CPU box every heavy step runs one torch thread (core/ops/cpu_threads.py),
# so the independent halves of the work run side by side, one per core. The gpu pool (limit 1
# in dagster.yaml, right for one GPU) is raised to the lane count for this script and set back
# when it exits. POLYDAG_LANES=1 runs everything in one lane.
lanes="${POLYDAG_LANES:-2}"
pool_before=$(dagster instance concurrency get gpu | sed -n 's|.* / \([0-9]*\) slots.*|\1|p')
[ "${pool_before:-0}" -ge 1 ] || pool_before=1
trap 'dagster instance concurrency set gpu "$pool_before" >/dev/null' EXIT
dagster instance concurrency set gpu "$lanes" >/dev/null
side_by_side() {  # run "$1" and "$2" (shell commands) together when there are two lanes
  if [ "$lanes" -ge 2 ]; then
    bash -c "$1" & local a=$!
    bash -c "$2" & local b=$!
    local rc=0; wait "$a" || rc=$?; wait "$b" || rc=$?; return "$rc"
  else
    bash -c "$1" && bash -c "$2"
  fi
}

stage "datasets and base models (polychromic | step importance)"
side_by_side "dagster asset materialize -m polydag --select 'reply_pairs,base_model'" \
             "dagster asset materialize -m polydag --select '$codi_assets'"

# the grid's λ split in two halves, one run each (a run trains its units one after another)
n_lambdas=$(wc -l <<<"$lambdas"); half=$(( (n_lambdas + 1) / 2 ))
mid_lo="$(sed -n "${half}p" <<<"$lambdas")|$(sed -n '$p' <<<"$seeds")"
mid_hi="$(sed -n "$((half + 1))p" <<<"$lambdas")|$(sed -n '1p' <<<"$seeds")"
stage "LoRA adapters and generations for λ × seed ${first}...${last} in two runs"
if [ "$n_lambdas" -ge 2 ] && [ "$lanes" -ge 2 ]; then
  side_by_side "dagster asset materialize -m polydag --select 'lora_checkpoints,generations' --partition-range '${first}...${mid_lo}'" \
               "dagster asset materialize -m polydag --select 'lora_checkpoints,generations' --partition-range '${mid_hi}...${last}'"
else
  dagster asset materialize -m polydag --select 'lora_checkpoints,generations' --partition-range "${first}...${last}"
fi

stage "metrics and everything downstream | step-importance sweep over ${STEP_PROBLEMS} problems"
side_by_side "dagster asset materialize -m polydag --select 'metrics*'" \
             "polydag sweep step-importance --max-problems '$STEP_PROBLEMS' && ${control_sweep}dagster asset materialize -m polydag --select step_importance_summary"
polydag verdict
polydag summary step-importance

stage "done: results in data/polydag.duckdb, UI: dagster dev -w workspace.yaml"
