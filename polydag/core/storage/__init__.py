"""The results database: short-lived DuckDB connections (``duck``), read-only SQL for users
(``sql``), table rendering and column docs (``tables``, ``table_docs``), and the side tables
written outside the IO manager: the live ``training_log``, ``alerts`` and ``costs``."""
