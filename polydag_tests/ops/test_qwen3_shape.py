"""The real Qwen3-0.6B shape through the real training path, on the CPU, without a download.

A random-weight model built from Qwen3-0.6B's own config (596M parameters, 151,936-row
vocabulary, 28 layers) and an offline tokenizer with Qwen3's length and special ids is saved
as a local model directory, then ``train_lora_adapter`` trains a LoRA on it for two steps at
λ = 1 in the researchers' chat format (Qwen3's template, ``enable_thinking: false``): step 1
is cross-entropy, step 2 a diversity step (samples, leave-one-out advantages, the
score-function term with its gradient). The adapter is saved with peft's ``save_pretrained``
and loads back with ``PeftModel.from_pretrained``.

The samples use ``top_k: 2``: a random model's next-token distribution is nearly uniform over
151,936 tokens, so unfiltered samples never share a token, every pairwise distance is exactly
1 and every leave-one-out advantage exactly 0 (no gradient to check). Two candidates per
position make the 3 samples overlap in part, so the distances differ. The learning rate is
small (1e-5) for the same reason: at the default 2e-3, the one Adam step before the diversity
step already makes the random model repeat the gold reply's first token, the 3 samples are
identical, and the advantages are 0 again.

The training's peak memory is measured as the increase of the process's resident set size
(sampled every few milliseconds) over its size before the call. That is what the memory
estimate of ``polydag doctor`` is checked against (``test_memory_estimate_…``).

Sizes are the smallest that still exercise everything (sequences of ≤ 16 tokens, one pair per
batch, 3 samples of ≤ 4 tokens: the leave-one-out estimator needs n_generations ≥ 3, one
diversity step); at 1.2 GFLOP per token even that is most of the module's time on 2 shared
cores, with building, writing and loading 1.2 GB of weights.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch
from safetensors.torch import load_file

from polydag.core.ops import shapes

SHAPE = "qwen3-0.6b"
MAX_LENGTH = 16
PAIRS = [
    ("Just finished my first marathon, legs are gone", "Congratulations, that is huge! Rest up"),
    ("Cold brew season never ends in this house", "Totally agree, it never gets old"),
]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096  # resident pages (Linux pages are 4 KiB here)


class PeakRss:
    """The largest resident set size seen while the block runs, sampled every ``every_s``
    (torch releases the GIL in its kernels, so the sampler thread runs during them)."""

    def __init__(self, every_s: float = 0.002):
        self.every_s, self.peak, self.before = every_s, 0, 0
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.every_s)

    def __enter__(self):
        self.before = self.peak = _rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())

    @property
    def increase(self) -> int:
        return self.peak - self.before


def smoke_config():
    from polydag.core.polychromic.config import PolychromicTrainConfig

    return PolychromicTrainConfig(
        diversity_weight=1.0, n_generations=3, max_examples_for_diversity=1, compute_diversity_every_n_steps=2,
        max_new_tokens=4, max_length=MAX_LENGTH, per_device_train_batch_size=1, max_steps=2, save_steps=0,
        lora_r=8, target_modules=shapes.ATTENTION_PROJECTIONS, diversity_metric="distinct", top_k=2, device="cpu",
        prompt_format="chat", chat_template_kwargs={"enable_thinking": False}, gate_eval_pairs=len(PAIRS),
        learning_rate=1e-5, progress_every_s=60.0,
    )


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from polydag.core.polychromic.trainer import train_lora_adapter

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread is the faster choice on shared cores (core.ops.cpu_threads)
    try:
        root = tmp_path_factory.mktemp("qwen3-shape")
        timings = {}
        start = time.perf_counter()
        base_dir = shapes.save_random_model(SHAPE, root / "base", dtype="bfloat16", init="pool",
                                            texts=[t for pair in PAIRS for t in pair])
        timings["build_and_save_s"] = time.perf_counter() - start
        cfg = smoke_config()
        start = time.perf_counter()
        with PeakRss() as rss:
            result = train_lora_adapter(base_dir, PAIRS, cfg, root / "adapter")
        timings["train_s"] = time.perf_counter() - start
        yield {"base_dir": base_dir, "cfg": cfg, "result": result, "rss": rss, "timings": timings}
    finally:
        torch.set_num_threads(threads)


def test_qwen3_0_6b_shape_trains_a_diversity_lora_and_the_adapter_reloads(smoke_run):
    from peft import PeftModel

    from polydag.core.polychromic.base_model import load_model_and_tokenizer

    result = smoke_run["result"]
    print(f"\nQwen3-0.6B shape smoke: {smoke_run['timings']}, result wall {result.wall_s:.1f} s")
    assert result.steps == 2 and result.n_diversity_steps == 1
    assert result.vocab_size == shapes.TOKENIZER_SIZES[SHAPE]
    assert result.grad_shares[0] > 0, result.grad_shares  # the diversity term had a gradient
    assert result.final_diversity_score is not None

    saved = load_file(f"{result.adapter_dir}/adapter_model.safetensors")
    n_layers = shapes.SHAPES[SHAPE]["num_hidden_layers"]
    assert len(saved) == n_layers * len(shapes.ATTENTION_PROJECTIONS) * 2  # lora_A and lora_B everywhere
    assert sum(t.numel() for t in saved.values()) == shapes.lora_param_count(SHAPE, 8, shapes.ATTENTION_PROJECTIONS)
    lora_b = [t for k, t in saved.items() if "lora_B" in k]
    assert any(bool(t.abs().sum() > 0) for t in lora_b)  # B starts at zero: the steps moved it

    base, _ = load_model_and_tokenizer(smoke_run["base_dir"], device="cpu", dtype=torch.bfloat16)
    assert sum(p.numel() for p in base.parameters()) == shapes.param_counts(SHAPE)["total"]
    reloaded = PeftModel.from_pretrained(base, result.adapter_dir)
    state = {k: v for k, v in reloaded.state_dict().items() if "lora_" in k}
    assert len(state) == len(saved)
    for key, value in saved.items():
        loaded = state[key.replace(".weight", ".default.weight")]
        assert torch.equal(loaded.to(value.dtype), value), key


# The estimate must be within this share of the measured peak (either side). What it leaves out
# on the CPU (the 151,669-token tokenizer, the Trainer's objects, allocator slack) measured
# about 0.15 GiB after loading, against 3.3 GiB at the peak; the loading phase sets the peak
# here (fp32 weights while the bf16 file's pages are mapped), the training phases the GPU's.
MEMORY_TOLERANCE = 0.15


def test_memory_estimate_of_the_doctor_is_within_tolerance_of_the_measured_peak(smoke_run):
    from polydag.core.ops.memory import GIB, estimate_for_config

    # the CPU loader's dtype, from the bf16 file save_random_model wrote
    estimate = estimate_for_config(SHAPE, smoke_run["cfg"], dtype="float32", checkpoint_dtype="bfloat16")
    training_phases = {k: v for k, v in estimate.phases.items() if k != "loading"}
    measured = smoke_run["rss"].increase
    error = estimate.peak_bytes / measured - 1
    print(f"\nmemory: measured peak RSS increase {measured / GIB:.3f} GiB, estimate {estimate.peak_gib:.3f} GiB "
          f"({estimate.peak_phase}), error {100 * error:+.1f}%; training phases at most "
          f"{max(training_phases.values()) / GIB:.3f} GiB; {estimate.describe()}")
    # The checkpoint's pages are mapped, not copied: how many of them are resident at the peak is
    # the kernel's choice (page cache, readahead, the loader's order), so the measured peak lies
    # between the estimate without them and the estimate with them (all resident). One run here
    # saw half of them (+22.9% over the measured peak), the others nearly all.
    without_pages = max(max(training_phases.values()),
                        estimate.phases["loading"] - estimate.parts["checkpoint_pages"])
    assert without_pages * (1 - MEMORY_TOLERANCE) <= measured <= estimate.peak_bytes * (1 + MEMORY_TOLERANCE), \
        (measured, without_pages, estimate.as_dict())
