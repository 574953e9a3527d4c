"""Public API of the step-importance workflow (plain Python; importing it never loads dagster).

``load_problems(path)`` reads GSM8K-format JSONL (or a JSON list of records) into a polars
table with ``problem_id``, ``question``, ``answer``, ``n_steps``, ``n_lines``, ``difficulty``.
"""

from polydag.core.step_importance.problems import ProblemsFormatError, load_problems

__all__ = ["ProblemsFormatError", "load_problems"]
