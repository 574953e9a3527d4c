"""The polychromic sweep's evaluation half: generations for an adapter, the quality checker,
sentence embeddings, the metrics and their significance tests, and the metric audits."""
