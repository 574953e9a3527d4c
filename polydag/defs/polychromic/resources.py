"""The ``collapse_alerting`` resource: what the diversity-collapse sensors flag, and what they do.

The thresholds are :class:`polydag.core.polychromic.config.CollapseThresholds` (declared and
validated there); the resource adds what only a deployment decides: the webhook, terminating
runs, and how long a tick waits for a busy database. ``build_resources`` reads the webhook URL
from ``POLYDAG_ALERT_WEBHOOK_URL`` and the terminate switch from
``POLYDAG_TERMINATE_ON_COLLAPSE=1`` so a deployment sets them without editing code.
"""

from typing import Optional

from dagster import ConfigurableResource

from polydag.core.polychromic.config import CollapseThresholds
from polydag.defs.config import run_config

_CollapseAlertingFields = run_config(
    "_CollapseAlertingFields", [CollapseThresholds], base=ConfigurableResource, module=__name__,
    doc="The collapse thresholds as resource fields.",
    extra={
        "webhook_url": (Optional[str], None, "POST each new alert as JSON to this URL (empty: no webhook)."),
        "webhook_timeout_s": (float, 5.0, "Seconds a webhook POST may take before it is given up (and logged)."),
        "terminate_on_collapse": (bool, False, "Cancel the training run a training alert names (if still "
                                               "running)."),
        "db_timeout_s": (float, 2.0, "How long a tick waits for a busy DuckDB file before skipping."),
    },
)


class CollapseAlerting(_CollapseAlertingFields):
    """What the diversity-collapse sensors flag and what they do about it."""

    def thresholds(self) -> CollapseThresholds:
        return self.spec()
