"""Thin Dagster layer: assets, checks, sensors and schedules that call ``polydag.core``."""
