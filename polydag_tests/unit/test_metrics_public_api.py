"""``polydag.metrics`` is importable without dagster and without pulling in torch."""

import subprocess
import sys
import textwrap


def test_public_api_imports_without_dagster_or_torch():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["dagster"] = None  # any import of dagster now raises ImportError
        import polydag.metrics as m
        assert "torch" not in sys.modules, "importing polydag.metrics pulled in torch"
        assert m.pass_at_k(10, 3, 5) == 11 / 12
        assert m.distinct_n(["the cat sat", "the cat ran"], 2) == 0.75
        assert m.self_bleu(["a b c d", "a b c d"]) == 1.0
        assert callable(m.semantic_diversity) and callable(m.vendi_score)
        print("OK")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK"
