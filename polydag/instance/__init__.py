"""The Dagster instance layer: the GPU run launcher, the run coordinator, GPU tags and pool,
the Kubernetes placement, and the one module that touches Dagster's private APIs.

Assets import only :mod:`polydag.instance.constants`, which does not import dagster.
"""
