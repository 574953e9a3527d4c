"""Plain-Python core of polydag.

Nothing under ``polydag.core`` imports dagster. Every function takes plain arguments (and,
for long work, a ``logging.Logger``), so it can be unit-tested with tiny models and reused
outside Dagster. Heavy libraries (torch, transformers) are imported inside functions so
that the Dagster code location loads in seconds.
"""
