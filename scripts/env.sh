# Sourced by the scripts: the documented defaults for this checkout.
# DAGSTER_HOME holds the Dagster instance (runs, λ and problem partitions, materializations);
# keeping it under data/ makes everything persist and show in `dagster dev` afterwards.
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/data/dagster_home}"
mkdir -p "$DAGSTER_HOME"
export PYTHONUNBUFFERED=1
# Asset events of a ranged run are handed to the event log in batches (polydag/instance/event_log.py);
# exported for the webserver and daemon, which create runs without importing the code location.
export DAGSTER_EVENT_BATCH_SIZE="${DAGSTER_EVENT_BATCH_SIZE:-1000}"
# Nothing downloads at run time: the embedding model ships in a pip package, models are built here.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
