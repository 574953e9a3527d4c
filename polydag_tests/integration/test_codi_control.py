"""The negative control: a continuous-thought model whose latent thoughts are cut off.

``cut_thoughts`` makes every fed thought one fixed vector; these tests check that the answers
of such a model do not depend on how its thoughts would be computed (scrambling the
projection changes nothing), that the same scramble does change an uncut model's answers (so
the check can fail), and that ``latent_thoughts="constant"`` training keeps the cut through
training and writes a checkpoint whose thoughts are constant when the strict loader reads it.
"""

import pytest
import torch

from polydag.core.step_importance.inference import reference_answer_one
from polydag.core.step_importance.model import (
    TinyCodiConfig,
    build_tiny_codi_model,
    constant_thought,
    cut_thoughts,
    thoughts_are_constant,
)
from polydag.core.step_importance.tiny_tokenizer import build_tiny_tokenizer
from polydag_tests.integration.test_codi_model import QUESTIONS, REPO_DATA

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer(QUESTIONS)


def _model(tokenizer):
    # a larger init than the default 0.02, so that thoughts visibly move the logits
    return build_tiny_codi_model(tokenizer, TinyCodiConfig(hidden_size=32, intermediate_size=64, prj_dim=32,
                                                           initializer_range=0.2))


def _answers(model, tokenizer):
    return [reference_answer_one(model, tokenizer, q, max_new_tokens=6, gold="5") for q in QUESTIONS]


def _scramble_projection(model, seed=7):
    """New random weights for the layers that compute a thought from the hidden state."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in (model.prj[1], model.prj[3]):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator))


def test_a_cut_model_feeds_one_constant_and_its_answers_ignore_the_thoughts(tokenizer):
    model = _model(tokenizer)
    constant = constant_thought(model.hidden_size, seed=0)
    assert constant.mean().abs() < 1e-6 and constant.std(unbiased=False) == pytest.approx(1.0)
    assert not thoughts_are_constant(model)
    cut_thoughts(model, constant)
    assert thoughts_are_constant(model)
    assert not any(p.requires_grad for p in model.prj.parameters())
    before = _answers(model, tokenizer)
    for result in before:
        assert len(result.fed_thoughts) == model.num_latent
        assert all(torch.equal(z, constant) for z in result.fed_thoughts)
    _scramble_projection(model)
    after = _answers(model, tokenizer)
    assert [r.token_ids for r in after] == [r.token_ids for r in before]
    for a, b in zip(after, before):
        assert torch.equal(a.first_answer_logprobs, b.first_answer_logprobs)
        assert a.gold_logprob == b.gold_logprob


def test_the_same_scramble_changes_an_uncut_models_answers(tokenizer):
    model = _model(tokenizer)
    before = _answers(model, tokenizer)
    # its thoughts carry the question: they differ from one question to the next
    assert not torch.allclose(before[0].fed_thoughts[0], before[2].fed_thoughts[0])
    _scramble_projection(model)
    after = _answers(model, tokenizer)
    assert any(not torch.allclose(a.first_answer_logprobs, b.first_answer_logprobs, atol=1e-4)
               for a, b in zip(after, before))


def test_constant_thought_training_keeps_the_cut_and_the_recipe(tmp_path):
    from polydag.core.step_importance import api
    from polydag.core.step_importance.config import CodiModelConfig, CodiTrainConfig
    from polydag.core.step_importance.problems import load_problems
    from polydag.core.step_importance.train import BASE_DIR, load_trained_model, train_default_model

    problems = load_problems(REPO_DATA).head(30)
    recipe = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, prj_dim=32, steps=3,
                  n_train_problems=64, n_heldout=10, batch_size=8, progress_every_s=0.0)
    with pytest.raises(ValueError, match="latent_thoughts must be one of"):
        CodiTrainConfig(**recipe, latent_thoughts="zeros")
    info = train_default_model(problems, tmp_path / "control", CodiTrainConfig(**recipe, latent_thoughts="constant"))
    assert info.latent_thoughts == "constant" and info.steps_done == 3 and info.n_train == 64
    model, tokenizer = load_trained_model(tmp_path / "control")
    # training moved the base but not the cut: LayerNorm weight still 0, bias still the constant
    assert thoughts_are_constant(model)
    assert torch.equal(model.prj.ln.bias, constant_thought(32, seed=0))
    result = reference_answer_one(model, tokenizer, problems["question"][0], max_new_tokens=4)
    assert all(torch.equal(z, constant_thought(32, seed=0)) for z in result.fed_thoughts)
    # a user's own control checkpoint is described from its weights
    registered = api.register_checkpoint(CodiModelConfig(
        checkpoint_dir=str(tmp_path / "control"), base_model_path=str(tmp_path / "control" / BASE_DIR),
        lora_r=8, lora_alpha=16, prj_dim=32, num_latent=6))
    assert registered.latent_thoughts == "constant" and registered.sha256 == info.sha256
