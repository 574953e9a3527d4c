"""polydag: a Dagster asset platform for polychromic LoRA sweeps and step-importance ablations.

``dagster asset materialize -m polydag`` and ``dagster dev`` find the ``defs`` Definitions
here. The plain-Python API (``polydag.metrics``, ``polydag.step_importance``, ``polydag.core``)
must import without dagster, so the Definitions are loaded eagerly only when dagster itself is
already loaded (it always is when Dagster loads this module), and lazily on attribute access
otherwise.
"""

import sys

if sys.modules.get("dagster") is not None:
    from polydag.definitions import defs  # noqa: F401


def __getattr__(name: str):
    if name == "defs":
        from polydag.definitions import defs

        return defs
    raise AttributeError(f"module 'polydag' has no attribute {name!r}")
