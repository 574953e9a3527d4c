"""CODI checkpoints: key layout, strict loading, and answers identical to CODI's test.py loop.

The "CODI-side" model here is built the way CODI's ``src/model.py`` builds it (a LLaMA, its
embeddings resized to V + 3, ``get_peft_model`` with a LoRA config, and the projection as an
``nn.Sequential`` plus ``add_module("ln", ...)``) and saved the way CODI's Trainer saves it
(``torch.save(model.state_dict())``), without any polydag code, so the loader is tested
against the real layout rather than against its own writer.
"""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from polydag.core.step_importance.inference import (
    answer_questions,
    decode_answer,
    encode_question,
    reference_answer_one,
    run_thought_loop,
)
from polydag.core.step_importance.model import (
    LLAMA_TARGET_MODULES,
    CodiCheckpointError,
    TinyCodiConfig,
    build_tiny_codi_model,
    load_codi_checkpoint,
    save_codi_checkpoint,
)
from polydag.core.step_importance.tiny_tokenizer import build_tiny_tokenizer

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

REPO_DATA = Path(__file__).resolve().parents[2] / "data" / "gsm8k_synthetic.jsonl"
QUESTIONS = [
    "Tom has 12 apples. He buys 5 more apples. How many apples does Tom have now?",
    "Anna has 7 coins. She loses 2 coins. Then the number of coins Anna has doubles. How many coins does Anna have now?",
    "Mia has 3 shells. How many shells does Mia have now?",
]
LORA = dict(lora_r=4, lora_alpha=8, target_modules=list(LLAMA_TARGET_MODULES), prj_dim=24)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer(QUESTIONS)


class CodiLikeModule(nn.Module):
    """The two attributes of CODI's ``CODI`` module that own parameters: ``codi`` and ``prj``."""

    def __init__(self, codi, prj):
        super().__init__()
        self.codi, self.prj = codi, prj


def build_codi_side(tokenizer, tie: bool = False, seed: int = 1) -> CodiLikeModule:
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tie,
                         initializer_range=0.2, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    base = LlamaForCausalLM(config)
    base.resize_token_embeddings(len(tokenizer) + 3)
    lora = LoraConfig(task_type=TaskType.CAUSAL_LM, inference_mode=False, r=LORA["lora_r"],
                      lora_alpha=LORA["lora_alpha"], lora_dropout=0.1,
                      target_modules=LORA["target_modules"], init_lora_weights=True)
    codi = get_peft_model(base, lora)
    prj = nn.Sequential(nn.Dropout(0.0), nn.Linear(32, LORA["prj_dim"]), nn.GELU(), nn.Linear(LORA["prj_dim"], 32))
    prj.add_module("ln", nn.LayerNorm(32))
    module = CodiLikeModule(codi, prj)
    with torch.no_grad():  # LoRA B starts at zero; make the adapters matter
        for name, param in module.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.3)
    return module.eval()


def write_base_dir(module: CodiLikeModule, tokenizer, path):
    """A local 'base model' directory: the config of the original (pre-resize) LLaMA."""
    config = module.codi.get_base_model().config.to_dict()
    config["vocab_size"] = len(tokenizer)
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    return path


def codi_test_py_answer(module: CodiLikeModule, tokenizer, question: str, num_latent: int = 6, max_new_tokens: int = 24):
    """A line-by-line transcription of CODI test.py's loop (batch of one, greedy, use_prj,
    remove_eos=True), operating on the CODI-side module."""
    vocab = module.codi.config.vocab_size
    bot_id, eot_id = vocab - 2, vocab - 1
    embd = module.codi.get_base_model().model.embed_tokens
    batch = tokenizer([question.strip().replace("  ", " ")], return_tensors="pt")  # one row: no padding
    bot_tensor = torch.tensor([bot_id], dtype=torch.long).expand(batch["input_ids"].size(0), 1)
    input_ids = torch.cat((batch["input_ids"], bot_tensor), dim=1)
    attention_mask = torch.cat((batch["attention_mask"], torch.ones_like(bot_tensor)), dim=1)
    with torch.no_grad():
        outputs = module.codi(input_ids=input_ids, use_cache=True, output_hidden_states=True,
                              past_key_values=None, attention_mask=attention_mask)
        past_key_values = outputs.past_key_values
        latent_embd = module.prj(outputs.hidden_states[-1][:, -1, :].unsqueeze(1))
        for _ in range(num_latent):
            outputs = module.codi(inputs_embeds=latent_embd, use_cache=True, output_hidden_states=True,
                                  past_key_values=past_key_values)
            past_key_values = outputs.past_key_values
            latent_embd = module.prj(outputs.hidden_states[-1][:, -1, :].unsqueeze(1))
        output = embd(torch.tensor([eot_id], dtype=torch.long)).unsqueeze(0)
        pred_tokens = []
        for _ in range(max_new_tokens):
            out = module.codi(inputs_embeds=output, output_hidden_states=False, attention_mask=None,
                              use_cache=True, output_attentions=False, past_key_values=past_key_values)
            past_key_values = out.past_key_values
            logits = out.logits[:, -1, : module.codi.config.vocab_size - 1]
            next_token_ids = torch.argmax(logits, dim=-1).squeeze(-1)
            pred_tokens.append(next_token_ids.item())
            if next_token_ids == tokenizer.eos_token_id:
                break
            output = embd(next_token_ids).unsqueeze(0).unsqueeze(0)
    return pred_tokens


@pytest.fixture(scope="module")
def codi_checkpoint(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("codi")
    module = build_codi_side(tokenizer)
    ckpt = root / "ckpt"
    ckpt.mkdir()
    torch.save(module.state_dict(), ckpt / "pytorch_model.bin")  # what CODI's Trainer writes
    base = write_base_dir(module, tokenizer, root / "base")
    return module, ckpt, base


def load(ckpt, base, **overrides):
    return load_codi_checkpoint(ckpt, base, **{**LORA, **overrides})


def test_codi_layout_loads_with_no_missing_or_unexpected_keys(codi_checkpoint):
    module, ckpt, base = codi_checkpoint
    model = load(ckpt, base)
    saved = torch.load(ckpt / "pytorch_model.bin", weights_only=True)
    assert set(model.state_dict()) == set(saved)
    assert any(k.startswith("codi.base_model.model.") and k.endswith("q_proj.lora_A.default.weight") for k in saved)
    assert {"prj.1.weight", "prj.1.bias", "prj.3.weight", "prj.3.bias", "prj.ln.weight", "prj.ln.bias"} <= set(saved)
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    vocab = module.codi.config.vocab_size
    assert (model.vocab_size, model.pad_token_id, model.bot_id, model.eot_id) == (vocab, vocab - 3, vocab - 2, vocab - 1)


def test_the_base_is_built_without_weights(codi_checkpoint):
    """No full-size random base is initialised: its parameters are on the meta device."""
    from polydag.core.step_importance.model import _build_base_from_config

    _, _, base = codi_checkpoint
    causal_lm = _build_base_from_config(Path(base), torch.bfloat16)
    assert all(p.is_meta for p in causal_lm.parameters())
    assert not any(b.is_meta for b in causal_lm.buffers())   # rotary inv_freq is computed, not loaded


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_loads_straight_into_a_reduced_precision(codi_checkpoint, tokenizer, dtype):
    """Every parameter is the checkpoint's tensor cast to the requested dtype, and it answers."""
    module, ckpt, base = codi_checkpoint
    model = load(ckpt, base, dtype=dtype)
    saved = torch.load(ckpt / "pytorch_model.bin", weights_only=True)
    assert {p.dtype for p in model.parameters()} == {dtype}
    assert not any(p.is_meta for p in model.parameters()) and not any(b.is_meta for b in model.buffers())
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key].to(dtype)), key
    assert len(reference_answer_one(model, tokenizer, QUESTIONS[0], max_new_tokens=4).token_ids) >= 1


def test_loaded_model_answers_exactly_like_codi_test_py(codi_checkpoint, tokenizer):
    module, ckpt, base = codi_checkpoint
    model = load(ckpt, base)
    expected = [codi_test_py_answer(module, tokenizer, q) for q in QUESTIONS]
    assert len({tuple(e) for e in expected}) > 1, "degenerate model: every question gets the same tokens"
    reference = [reference_answer_one(model, tokenizer, q, max_new_tokens=24).token_ids for q in QUESTIONS]
    assert reference == expected
    batched = run_thought_loop(model, [encode_question(tokenizer, q) for q in QUESTIONS],
                               eos_token_id=tokenizer.eos_token_id, max_new_tokens=24).token_ids
    assert batched == expected
    texts = [text for text, _ in answer_questions(model, tokenizer, QUESTIONS, batch_size=2, max_new_tokens=24)]
    assert texts == [decode_answer(tokenizer, e) for e in expected]


def test_wrong_lora_settings_fail_on_shapes_naming_lora_r(codi_checkpoint):
    _, ckpt, base = codi_checkpoint
    with pytest.raises(CodiCheckpointError, match=r"shape mismatch.*lora_r.*lora_A"):
        load(ckpt, base, lora_r=8)


def test_extra_or_missing_key_fails_naming_it(codi_checkpoint, tmp_path):
    _, ckpt, base = codi_checkpoint
    state = torch.load(ckpt / "pytorch_model.bin", weights_only=True)
    extra = tmp_path / "extra"
    extra.mkdir()
    torch.save({**state, "prj.4.weight": torch.zeros(3)}, extra / "pytorch_model.bin")
    with pytest.raises(CodiCheckpointError, match=r"1 unexpected key\(s\): prj\.4\.weight"):
        load(extra, base)
    missing = tmp_path / "missing"
    missing.mkdir()
    key = "codi.base_model.model.model.layers.1.mlp.down_proj.lora_B.default.weight"
    torch.save({k: v for k, v in state.items() if k != key}, missing / "pytorch_model.bin")
    with pytest.raises(CodiCheckpointError, match=r"1 missing key\(s\): " + key.replace(".", r"\.")):
        load(missing, base)
    # A checkpoint without the LoRA wrapper (plain HF keys) is not silently accepted either.
    plain = tmp_path / "plain"
    plain.mkdir()
    torch.save({k.replace("codi.base_model.model.", "codi."): v for k, v in state.items()}, plain / "pytorch_model.bin")
    with pytest.raises(CodiCheckpointError, match="missing key"):
        load(plain, base)


def test_weights_that_are_not_all_finite_are_refused_naming_the_tensors(codi_checkpoint, tmp_path):
    _, ckpt, base = codi_checkpoint
    state = torch.load(ckpt / "pytorch_model.bin", weights_only=True)
    key = "prj.3.weight"
    bad = tmp_path / "nan"
    bad.mkdir()
    torch.save({**state, key: torch.full_like(state[key], float("nan"))}, bad / "pytorch_model.bin")
    with pytest.raises(CodiCheckpointError, match=r"1 tensor\(s\) with NaN or infinite values: prj\.3\.weight"):
        load(bad, base)
    all_nan = tmp_path / "all-nan"
    all_nan.mkdir()
    torch.save({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()},
               all_nan / "pytorch_model.bin")
    with pytest.raises(CodiCheckpointError, match="NaN or infinite"):
        load(all_nan, base)


def test_clear_errors_for_missing_paths(codi_checkpoint, tmp_path):
    _, ckpt, base = codi_checkpoint
    with pytest.raises(FileNotFoundError, match="checkpoint directory not found"):
        load(tmp_path / "nope", base)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither model.safetensors nor pytorch_model.bin"):
        load(tmp_path / "empty", base)
    with pytest.raises(FileNotFoundError, match="base model path not found"):
        load(ckpt, tmp_path / "no_base")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load(ckpt, tmp_path / "empty")


def test_save_roundtrip_safetensors_and_bin(tokenizer, tmp_path):
    model = build_tiny_codi_model(tokenizer, TinyCodiConfig(hidden_size=32, intermediate_size=64, prj_dim=24,
                                                            lora_r=4, lora_alpha=8, initializer_range=0.2))
    base = tmp_path / "base"
    base.mkdir()
    config = model.causal_lm.config.to_dict()
    config["vocab_size"] = len(tokenizer)
    (base / "config.json").write_text(json.dumps(config))
    for fmt, name in (("safetensors", "model.safetensors"), ("bin", "pytorch_model.bin")):
        out = save_codi_checkpoint(model, tmp_path / fmt, fmt=fmt)
        assert out.name == name
        loaded = load(tmp_path / fmt, base)
        original = model.state_dict()
        assert all(torch.equal(v, original[k]) for k, v in loaded.state_dict().items())


def test_tied_head_dropped_by_a_deduplicating_writer_is_tolerated(tokenizer, tmp_path):
    module = build_codi_side(tokenizer, tie=True)
    from safetensors.torch import save_file

    state = {k: v.clone().contiguous() for k, v in module.state_dict().items() if not k.endswith("lm_head.weight")}
    (tmp_path / "ckpt").mkdir()
    save_file(state, str(tmp_path / "ckpt" / "model.safetensors"))
    base = write_base_dir(module, tokenizer, tmp_path / "base")
    model = load(tmp_path / "ckpt", base)
    head = model.causal_lm.get_output_embeddings().weight
    assert torch.equal(head, model.causal_lm.get_input_embeddings().weight)
    assert torch.equal(head, module.codi.get_base_model().lm_head.weight)


def test_train_default_model_writes_a_loadable_codi_checkpoint(tmp_path):
    """A few training steps end to end: CODI layout on disk, strict reload, honest split."""
    import polars as pl

    from polydag.core.step_importance import api
    from polydag.core.step_importance.config import CodiTrainConfig as TrainConfig, StepImportanceConfig
    from polydag.core.step_importance.train import generated_training_problems, load_trained_model, train_default_model
    from polydag.core.step_importance.problems import load_problems
    from polydag.step_importance import load_problems as public_load

    problems = load_problems(REPO_DATA).head(30)
    assert public_load is load_problems
    cfg = TrainConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, prj_dim=32, steps=3,
                      n_train_problems=64, n_heldout=10, batch_size=8, progress_every_s=0.0)
    info = train_default_model(problems, tmp_path / "codi", cfg)
    assert sorted(p.name for p in (tmp_path / "codi").iterdir()) == ["base", "codi_settings.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["codi"]          # no temporary directory left behind
    assert info.steps_done == 3 and info.n_heldout == 10 and 0 <= info.heldout_accuracy <= 1
    assert 0 <= info.chance_accuracy <= 1 and info.n_train == 64
    model, tokenizer = load_trained_model(tmp_path / "codi")
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "codi" / "model.safetensors"))
    assert set(saved) == set(model.state_dict()) and all(k.startswith(("codi.base_model.model.", "prj.")) for k in saved)
    # The model never trains on a question of the table.
    questions = set(problems["question"].to_list())
    assert not questions & {q for q, _ in generated_training_problems(cfg, exclude=questions)}

    row = api.CodiModelInfo(kind="default", path=str(tmp_path / "codi"), base_model_path=str(tmp_path / "codi" / "base"),
                            lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=",".join(LLAMA_TARGET_MODULES),
                            prj_dim=cfg.prj_dim, num_latent=cfg.num_latent, sha256=info.sha256, n_params=info.n_params)
    rows = api.run_step_importance(api.info_as_row(row), problems.head(2),
                                   StepImportanceConfig(compat_researchers=True, device="cpu", max_new_tokens=4,
                                                        chunk_size=1), all_problems=problems)
    assert set(rows["protocol"].unique()) == {"codi", "researchers"}
    researchers = rows.filter(pl.col("protocol") == "researchers")
    assert set(researchers["site"].unique()) - {"none"} == {"layer:1"}   # 2 layers: the middle one
    assert rows.filter(pl.col("scheme") == "null")["answer_text"].to_list() == \
        rows.filter(pl.col("scheme") == "baseline")["answer_text"].to_list()
    # chunk_size 0 (sized to the free memory: both problems in one chunk) gives the same rows as one by one
    auto = api.run_step_importance(api.info_as_row(row), problems.head(2),
                                   StepImportanceConfig(compat_researchers=True, device="cpu", max_new_tokens=4,
                                                        chunk_size=0), all_problems=problems)
    floats = [c for c, t in rows.schema.items() if t.is_float()]
    assert auto.drop(floats).equals(rows.drop(floats))  # answers, flips and variants exactly
    for column in floats:  # batch size changes float rounding, not answers
        assert auto[column].to_list() == pytest.approx(rows[column].to_list(), rel=1e-4, abs=1e-6, nan_ok=True)


def test_auto_chunk_size_reads_the_models_shape(codi_checkpoint, tokenizer):
    """On CUDA, chunk_size 0 sizes chunks from the model's own config and the free bytes."""
    from polydag.core.step_importance import api
    from polydag.core.step_importance.chunking import chunk_memory, chunk_size_for_memory
    from polydag.core.step_importance.config import AblationSpec
    from polydag.core.step_importance.inference import encode_gold_reply, encode_question
    from polydag.core.step_importance.problems import load_problems

    _, ckpt, base = codi_checkpoint
    model = load(ckpt, base)
    problems = load_problems(REPO_DATA).head(6)
    spec = AblationSpec(max_new_tokens=16)
    c = model.causal_lm.config
    memory = chunk_memory(n_layers=c.num_hidden_layers, n_kv_heads=c.num_key_value_heads,
                          head_dim=c.hidden_size // c.num_attention_heads, hidden_size=c.hidden_size,
                          vocab_size=model.vocab_size, dtype_bytes=4,
                          question_tokens=max(len(encode_question(tokenizer, q)) for q in problems["question"]) + 1,
                          num_latent=model.num_latent, max_new_tokens=16,
                          gold_tokens=max(len(encode_gold_reply(tokenizer, a)) for a in problems["answer"]),
                          with_metrics=True)
    n_variants = len(spec.variants(spec.protocol(model)))
    free = 3 * memory.problem_bytes(n_variants)  # half of it holds one problem and a half
    assert api.auto_chunk_size(model, tokenizer, problems, spec, torch.float32, free, cap=1024) == 1
    free = 9 * memory.problem_bytes(n_variants)  # half of it: four problems and a half
    assert api.auto_chunk_size(model, tokenizer, problems, spec, torch.float32, free, cap=1024) == 4 == \
        chunk_size_for_memory(free, memory, n_variants, n_problems=problems.height)
    assert api.auto_chunk_size(model, tokenizer, problems, spec, torch.float32, free, cap=3) == 3
    assert api.auto_chunk_size(model, tokenizer, problems, spec, torch.float32, 10**15, cap=1024) == 6  # the run
