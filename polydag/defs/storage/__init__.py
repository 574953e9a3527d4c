"""Dagster resources over the results database: the DuckDB IO manager, the storage resource
(database file and artifact folders) and the cost-recording resource."""
