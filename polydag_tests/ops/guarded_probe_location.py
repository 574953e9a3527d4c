"""The launcher tests' probe assets (``gpu_probe_location.py``) under polydag's executor, as
every run of the polydag code location: for the dead-run tests that need a GPU-pool step that
sleeps as long as asked (``$POLYDAG_PROBE_SLEEP_S``) and loads in a second."""

from dagster import Definitions

from polydag.instance.executor import polydag_executor
from polydag_tests.ops.gpu_probe_location import cpu_probe, gpu_probe

defs = Definitions(assets=[gpu_probe, cpu_probe], executor=polydag_executor)
