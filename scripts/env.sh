# Sourced by the scripts: the documented defaults for this checkout.
# DAGSTER_HOME holds the Dagster instance (runs, λ and problem partitions, materializations);
# keeping it under data/ makes everything persist and show in `dagster dev` afterwards.
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/data/dagster_home}"
mkdir -p "$DAGSTER_HOME"
export PYTHONUNBUFFERED=1
# Nothing downloads at run time: the embedding model ships in a pip package, models are built here.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
