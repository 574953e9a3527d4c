"""The Dagster instance layer: the GPU run launcher, the run coordinator, GPU tags and pool,
the code location's executor and the reaper of dead runs (with the worker liveness test they
share with the launcher), the Kubernetes placement, and the one module that touches Dagster's
private APIs.

Assets import only :mod:`polydag.instance.constants`, which does not import dagster.
"""
