"""The polydag code location: every domain's assets, checks and sensors.

Nothing heavy is imported here: torch and transformers load inside the asset bodies, so the
code location loads in seconds.
"""

import os
import warnings

from dagster import (
    BetaWarning,
    Definitions,
    load_asset_checks_from_modules,
    load_assets_from_modules,
)

# backfill_policy is marked beta; polydag relies on it knowingly (ranged runs), so the warning
# would only be noise on every CLI call.
warnings.filterwarnings("ignore", category=BetaWarning)

from polydag.instance.event_log import EVENT_BATCH_SIZE, EVENT_BATCH_SIZE_ENV

# Dagster's switch for batched event writes (read at every event): the asset events of a
# ranged run reach the event log as batches, which the instance's BatchedSqliteEventLogStorage
# (data/dagster_home/dagster.yaml) writes in one transaction; any other storage stores a batch
# event by event, as without it.
os.environ.setdefault(EVENT_BATCH_SIZE_ENV, EVENT_BATCH_SIZE)

from polydag.defs.automation import build_fill_sensor, with_fill_condition
from polydag.defs.evaluation import assets as evaluation_assets
from polydag.defs.evaluation import checks as evaluation_checks
from polydag.defs.polychromic import assets as polychromic_assets
from polydag.defs.polychromic import checks as polychromic_checks
from polydag.defs.resources import build_resources
from polydag.defs.polychromic.sensors import SENSORS
from polydag.defs.step_importance import assets as step_assets
from polydag.defs.step_importance import checks as step_checks
from polydag.instance.executor import polydag_executor

ASSET_MODULES = [polychromic_assets, evaluation_assets, step_assets]
CHECK_MODULES = [polychromic_checks, evaluation_checks, step_checks]


def build_defs(data_dir=None) -> Definitions:
    # every asset carries the nightly fill condition; the fill sensor (STOPPED until turned
    # on) evaluates it and requests missing or out-of-date partitions in ranged runs
    assets = with_fill_condition(load_assets_from_modules(ASSET_MODULES))
    return Definitions(
        assets=assets,
        asset_checks=load_asset_checks_from_modules(CHECK_MODULES),
        resources=build_resources(data_dir),
        sensors=[*SENSORS, build_fill_sensor()],
        # One process per run: steps share the loaded torch and the 2-core machine; the GPU
        # launcher isolates runs from each other instead. Dagster's in-process executor that
        # also fails runs whose worker died and frees their pool slots (instance/executor.py).
        executor=polydag_executor,
    )


defs = build_defs()
