import json
import logging

import pytest
import torch

from polydag.core.ops.atomic_dir import atomic_output_dir
from polydag.core.polychromic.base_model import (
    BaseModelConfig,
    DeviceError,
    ModelPathError,
    build_default_base_model,
    encode_prompt,
    encode_reply,
    load_model_and_tokenizer,
    resolve_device,
    resolve_local_base_model,
    weights_sha256,
)

PAIRS = [
    ("Who else is running before work this weekend? #running", "Proud of you, keep going! 💪"),
    ("Okay I need to talk about cold brew ☕", "Totally agree, cold brew never gets old"),
    ("Unpopular opinion: thin crust is overrated #pizza", "Hard disagree, I'd pick a margherita any day"),
    ("Tried a raised bed for the first time today 🌱", "Try mulching the beds next time, it changed everything"),
] * 4


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "tiny"
    info = build_default_base_model(PAIRS, out, BaseModelConfig.tiny_for_tests(), logger=logging.getLogger("test"))
    return out, info


def test_missing_or_incomplete_local_paths_raise_model_path_error(tmp_path):
    with pytest.raises(ModelPathError, match="does not exist"):
        resolve_local_base_model(tmp_path / "nope")
    assert issubclass(ModelPathError, FileNotFoundError)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelPathError, match="no config.json"):
        resolve_local_base_model(empty)
    (empty / "config.json").write_text("{}")
    with pytest.raises(ModelPathError, match="no tokenizer"):
        resolve_local_base_model(empty)
    (empty / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelPathError, match="no \\*.safetensors"):
        load_model_and_tokenizer(empty)


def test_local_model_needing_remote_code_is_refused(tiny_base, tmp_path):
    import shutil

    path, _ = tiny_base
    copy = tmp_path / "remote"
    shutil.copytree(path, copy)
    config = json.loads((copy / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.Model"}
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelPathError, match="trust_remote_code=False"):
        resolve_local_base_model(copy)


def test_a_model_whose_weights_are_not_finite_is_refused_naming_the_tensor(tiny_base, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    path, _ = tiny_base
    copy = tmp_path / "nan"
    shutil.copytree(path, copy)
    weights = copy / "model.safetensors"
    state = load_file(str(weights))
    name = next(k for k in state if k.endswith("mlp.down_proj.weight"))
    state[name] = torch.full_like(state[name], float("inf"))
    save_file(state, str(weights), metadata={"format": "pt"})
    with pytest.raises(ModelPathError, match=r"1 tensor\(s\) with NaN or infinite values: .*down_proj"):
        load_model_and_tokenizer(copy)


def test_build_save_load_round_trip(tiny_base):
    path, info = tiny_base
    assert info.source == "built-in-pipeline" and info.device == "cpu"
    assert info.pretrain_final_loss is not None and info.pretrain_final_loss > 0
    assert info.weights_sha256 == weights_sha256(path)
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left

    model, tokenizer = load_model_and_tokenizer(path)
    assert sum(p.numel() for p in model.parameters()) == info.n_params
    assert not model.training and next(model.parameters()).dtype == torch.float32
    assert tokenizer.pad_token_id is not None and tokenizer.eos_token_id is not None
    text = "Nothing beats pizza 🍕 #pizza"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    prompt_ids = encode_prompt(tokenizer, PAIRS[0][0])
    assert prompt_ids[0] == tokenizer.bos_token_id
    assert encode_reply(tokenizer, PAIRS[0][1])[-1] == tokenizer.eos_token_id

    local = resolve_local_base_model(path)
    assert local.source == "local" and local.n_params == info.n_params
    assert local.weights_sha256 == info.weights_sha256 and local.pretrain_final_loss is None

    # The saved model computes what was trained: its loss on the data is below a fresh init's.
    ids = torch.tensor([prompt_ids + encode_reply(tokenizer, PAIRS[0][1])])
    trained = model(input_ids=ids, labels=ids).loss.item()
    assert trained < torch.log(torch.tensor(float(len(tokenizer)))).item()


def test_build_is_reproducible_and_replaces_atomically(tiny_base, tmp_path):
    path, info = tiny_base
    again = build_default_base_model(PAIRS, tmp_path / "again", BaseModelConfig.tiny_for_tests())
    assert again.weights_sha256 == info.weights_sha256
    other_seed = build_default_base_model(PAIRS, tmp_path / "again", BaseModelConfig.tiny_for_tests(seed=1))
    assert other_seed.weights_sha256 != info.weights_sha256  # replaced in place
    assert weights_sha256(tmp_path / "again") == other_seed.weights_sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]


def test_llama_architecture_builds(tmp_path):
    info = build_default_base_model(PAIRS, tmp_path / "llama", BaseModelConfig.tiny_for_tests(architecture="llama"))
    assert json.loads((tmp_path / "llama" / "config.json").read_text())["model_type"] == "llama"
    assert info.n_params > 0


def test_config_validation():
    with pytest.raises(ValueError, match="architecture"):
        BaseModelConfig(architecture="gpt2")
    with pytest.raises(ValueError, match="num_heads"):
        BaseModelConfig(hidden_size=130, num_heads=4)
    with pytest.raises(ValueError, match="pretrain_steps"):
        BaseModelConfig(pretrain_steps=0)


def test_atomic_output_dir_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with atomic_output_dir(target) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("crash while saving")
    assert list(tmp_path.iterdir()) == []
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output_dir(target) as tmp:
            raise RuntimeError("crash")
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and (target / "old.txt").exists()


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_reply_only_pretraining_masks_the_prompt_tokens_and_padding():
    from polydag.core.polychromic.base_model import pretrain_batch

    batch = [([1, 5, 6, 7, 8], 3), ([1, 9, 4], 1)]
    ids, attention, labels = pretrain_batch(batch, 0, reply_only=True)
    assert ids.tolist() == [[1, 5, 6, 7, 8], [1, 9, 4, 0, 0]]
    assert attention.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert labels.tolist() == [[-100, -100, -100, 7, 8], [-100, 9, 4, -100, -100]]
    _, _, every = pretrain_batch(batch, 0, reply_only=False)
    assert every.tolist() == [[1, 5, 6, 7, 8], [1, 9, 4, -100, -100]]


def test_the_pretraining_loss_setting_changes_what_is_learned(tmp_path, tiny_base):
    from polydag.core.polychromic.base_model import weights_sha256

    out = tmp_path / "reply"
    info = build_default_base_model(PAIRS, out, BaseModelConfig.tiny_for_tests(pretrain_loss="reply"))
    assert weights_sha256(out) != weights_sha256(tiny_base[0])
    assert info.pretrain_final_loss != tiny_base[1].pretrain_final_loss
    with pytest.raises(ValueError, match="pretrain_loss"):
        BaseModelConfig(pretrain_loss="prompt")
