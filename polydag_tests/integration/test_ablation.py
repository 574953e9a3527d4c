"""The batched ablation engine against the one-row reference loop (tiny random LLaMA, fp32)."""

import dataclasses

import polars as pl
import pytest
import torch

from polydag.core.step_importance.ablation import (
    ROW_SCHEMA,
    AblationSpec,
    compute_mean_thoughts,
    compute_thought_moments,
    gaussian_values,
    make_protocol,
    resample_partner,
    run_ablations,
)
from polydag.core.step_importance.audit import reference_mismatches
from polydag.core.step_importance.config import MODES
from polydag.core.step_importance.inference import ThoughtEdit, reference_answer_one, run_thought_loop
from polydag.core.step_importance.model import LLAMA_TARGET_MODULES, TinyCodiConfig, build_tiny_codi_model
from polydag.core.step_importance.tiny_tokenizer import build_tiny_tokenizer
from polydag.core.step_importance.problems import question_id

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

QUESTIONS = [
    ("Tom has 12 apples. He buys 5 more apples. How many apples does Tom have now?", "17"),
    ("Anna has 7 coins. She loses 2 coins. Then the number of coins Anna has doubles. How many coins does Anna have now?", "10"),
    ("Mia has 3 shells. How many shells does Mia have now?", "3"),
    ("Ben has 9 cards. He sells 4 cards. He finds 2 more cards. How many cards does Ben have now?", "7"),
    ("Zoe has 5 books. Each of the books is worth 250 cents. How many cents are all of her books worth?", "1250"),
]
MAX_NEW = 6
LAYER = 1


@pytest.fixture(scope="module")
def problems():
    return pl.DataFrame({
        "problem_id": [question_id(q) for q, _ in QUESTIONS],
        "question": [q for q, _ in QUESTIONS],
        "answer": [a for _, a in QUESTIONS],
        "difficulty": ["<=2", "<=2", "<=2", "<=2", "<=2"],
    })


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer([q for q, _ in QUESTIONS])


@pytest.fixture(scope="module")
def model(tokenizer):
    # A large init scale makes the random model's outputs depend strongly on its thoughts, so
    # ablations change answers and the equality checks below are not vacuous.
    m = build_tiny_codi_model(tokenizer, TinyCodiConfig(hidden_size=32, intermediate_size=64, prj_dim=32,
                                                        lora_r=4, lora_alpha=8, initializer_range=0.3, seed=7))
    with torch.no_grad():
        for name, param in m.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.2)
    return m


def _edits_by_hand(variant, researchers, width, moments, partner_values, problem_id):
    """The documented meaning of a variant, written out independently of the engine: input
    position p replaces fed thought z_p; a layer site replaces the layer output at the step
    that feeds z_p (loop slot p + 1), except under the researchers' protocol, where position
    0 is the bot step (slot 0) and position p is slot p."""
    if not variant.ablated:
        return []
    if variant.mode == "zero":
        values = torch.zeros(6, width)
    elif variant.mode == "mean":
        values = moments[variant.site][0]
    elif variant.mode == "global_mean":   # one vector, the mean over positions
        values = moments[variant.site][0].mean(0).expand(6, width)
    elif variant.mode == "gaussian":      # the seeded draw (its moments: test_gaussian_values_...)
        values = gaussian_values(problem_id, variant.site, *moments[variant.site], seed=0)
    else:
        values = partner_values[variant.site]
    if variant.site == "input":
        return [ThoughtEdit("input", {p: values[p] for p in variant.ablated})]
    offset = 0 if researchers else 1
    return [ThoughtEdit(variant.site, {p + offset: values[p] for p in variant.ablated})]


def _reference_rows(model, tokenizer, problems, spec, rows, moments, pool):
    """Re-run every engine row with the one-row reference loop; returns mismatching rows."""
    protocol = make_protocol(model, spec.compat_researchers)
    variants = {v.variant: v for v in spec.variants(protocol)}
    questions = dict(zip(pool["problem_id"].to_list(), pool["question"].to_list()))
    layers = sorted({int(s.split(":")[1]) for s in spec.sites if s.startswith("layer:")})
    partners = {}
    mismatches = []
    for row in rows.iter_rows(named=True):
        variant = variants[row["variant"]]
        partner_values = None
        if variant.mode == "resample":
            if row["partner_id"] not in partners:
                # The partner's own un-ablated thoughts, captured by the reference loop.
                partner = reference_answer_one(model, tokenizer, questions[row["partner_id"]],
                                               num_fed=protocol.num_fed, max_new_tokens=1, capture_layers=layers)
                values = {}
                if not spec.compat_researchers:
                    values["input"] = torch.stack(partner.fed_thoughts)
                for layer in layers:
                    slots = torch.stack(partner.layer_outputs[layer])[:, 0]
                    values[f"layer:{layer}"] = slots[protocol.slot_offset: protocol.slot_offset + protocol.n_positions]
                partners[row["partner_id"]] = values
            partner_values = partners[row["partner_id"]]
        edits = _edits_by_hand(variant, spec.compat_researchers, model.hidden_size, moments, partner_values,
                               row["problem_id"])
        check_gold = row["problem_id"] == rows["problem_id"][0]   # one problem is enough for the metric
        ref = reference_answer_one(model, tokenizer, questions[row["problem_id"]], edits, num_fed=protocol.num_fed,
                                   max_new_tokens=MAX_NEW, gold=row["gold"] if check_gold else None)
        if ref.answer_text != row["answer_text"] or len(ref.token_ids) != row["n_answer_tokens"]:
            mismatches.append((row["problem_id"], row["variant"], ref.answer_text, row["answer_text"]))
        if check_gold:
            assert ref.gold_logprob == pytest.approx(row["gold_logprob"], abs=1e-3)
    return mismatches


@pytest.mark.parametrize("compat", [False, True], ids=["codi", "researchers"])
def test_batched_engine_matches_one_row_reference_for_every_variant_kind(model, tokenizer, problems, compat):
    modes = MODES
    if compat:
        # Position 0 is the bot step under the researchers' protocol.
        spec = AblationSpec.researchers(layer=LAYER, schemes=("prefix", "single"), modes=modes,
                                        prefix_sizes=(5,), single_positions=(0,), max_new_tokens=MAX_NEW)
    else:
        spec = AblationSpec(schemes=("prefix", "single"), modes=modes, sites=("input", f"layer:{LAYER}"),
                            prefix_sizes=(3,), single_positions=(5,), max_new_tokens=MAX_NEW)
    subset = problems.head(2)
    moments = compute_thought_moments(model, tokenizer, problems["question"].to_list(), sites=spec.sites,
                                      compat_researchers=compat)
    rows = run_ablations(model, tokenizer, subset, spec, chunk_size=2, reference_problems=problems)
    n_variants = len(spec.variants(make_protocol(model, compat)))
    assert rows.height == subset.height * n_variants
    assert _reference_rows(model, tokenizer, subset, spec, rows, moments, problems) == []
    ablated = rows.filter(pl.col("position") >= 0)
    # Non-vacuous: the ablations really change what the model says, in every mode.
    for mode in modes:
        assert ablated.filter((pl.col("mode") == mode) & (pl.col("kl_to_baseline") > 1e-6)).height > 0, mode
    assert ablated["answer_text"].n_unique() > 1


def test_null_control_and_baseline_match_plain_inference(model, tokenizer, problems):
    spec = AblationSpec(max_new_tokens=MAX_NEW)
    rows = run_ablations(model, tokenizer, problems, spec, chunk_size=3)
    base = rows.filter(pl.col("scheme") == "baseline").sort("problem_id")
    null = rows.filter(pl.col("scheme") == "null").sort("problem_id")
    assert base["answer_text"].to_list() == null["answer_text"].to_list()
    # The null row is computed on its own row (the engine shares rows with equal edits), so
    # its float metrics agree with the baseline's to rounding, not bit for bit.
    assert null["gold_logprob"].to_list() == pytest.approx(base["gold_logprob"].to_list(), abs=1e-4)
    assert max(null["kl_to_baseline"].to_list()) < 1e-6
    assert not null["flipped"].any() and not null["answer_changed"].any()
    for row in base.iter_rows(named=True):
        question = problems.filter(pl.col("problem_id") == row["problem_id"])["question"][0]
        assert reference_answer_one(model, tokenizer, question, max_new_tokens=MAX_NEW).answer_text == row["answer_text"]


def test_rows_schema_and_bookkeeping(model, tokenizer, problems):
    spec = AblationSpec(max_new_tokens=MAX_NEW)
    rows = run_ablations(model, tokenizer, problems, spec, chunk_size=2)
    assert rows.schema == pl.Schema(ROW_SCHEMA)
    variants = spec.variants(make_protocol(model))
    assert len(variants) == 2 + 6 + 6
    assert rows.height == problems.height * len(variants)
    assert rows.select("problem_id", "variant").is_duplicated().sum() == 0
    assert rows["problem_id"].unique(maintain_order=True).to_list() == problems["problem_id"].to_list()
    prefix = rows.filter(pl.col("scheme") == "prefix")
    assert sorted(set(zip(prefix["position"], prefix["ablated_positions"]))) == [
        (i, ",".join(str(p) for p in range(i + 1))) for i in range(6)]
    single = rows.filter(pl.col("scheme") == "single")
    assert sorted(set(zip(single["position"], single["ablated_positions"]))) == [(i, str(i)) for i in range(6)]
    base = rows.filter(pl.col("scheme") == "baseline").select("problem_id", b_correct="correct", b_pred="predicted")
    joined = rows.join(base, on="problem_id")
    assert (joined["baseline_correct"] == joined["b_correct"]).all()
    assert (joined["flipped"] == (joined["correct"] != joined["b_correct"])).all()
    assert (joined["answer_changed"] == ~joined["predicted"].eq_missing(joined["b_pred"])).all()
    assert rows["gold"].to_list()[:1] == [problems["answer"][0]]
    assert rows.filter(pl.col("scheme") == "baseline")["kl_to_baseline"].to_list() == [0.0] * problems.height
    assert rows["gold_logprob"].max() < 0


def test_results_do_not_depend_on_chunking(model, tokenizer, problems):
    spec = AblationSpec(modes=("resample", "zero"), sites=("input",), prefix_sizes=(2,), single_positions=(3,),
                        max_new_tokens=MAX_NEW, seed=3)
    whole = run_ablations(model, tokenizer, problems, spec, chunk_size=5)
    pieces = pl.concat([
        run_ablations(model, tokenizer, problems.slice(0, 2), spec, chunk_size=1, reference_problems=problems),
        run_ablations(model, tokenizer, problems.slice(2), spec, chunk_size=2, reference_problems=problems),
    ])
    cols = ["problem_id", "variant", "partner_id", "answer_text", "predicted", "correct"]
    assert whole.select(cols).equals(pieces.select(cols))


def test_resample_partner_is_deterministic_and_never_self():
    pool = [f"p{i}" for i in range(20)]
    partners = {pid: resample_partner(pid, pool, seed=0) for pid in pool}
    assert all(partner != pid and partner in pool for pid, partner in partners.items())
    assert partners == {pid: resample_partner(pid, list(reversed(pool)), seed=0) for pid in pool}
    assert partners != {pid: resample_partner(pid, pool, seed=1) for pid in pool}
    with pytest.raises(ValueError, match="at least two"):
        resample_partner("p0", ["p0"], seed=0)


def test_mean_thoughts_are_the_mean_of_reference_thoughts(model, tokenizer, problems):
    questions = problems["question"].to_list()
    mean = compute_mean_thoughts(model, tokenizer, questions, sites=("input", f"layer:{LAYER}"), batch_size=2)
    refs = [reference_answer_one(model, tokenizer, q, max_new_tokens=1, capture_layers=[LAYER]) for q in questions]
    fed = torch.stack([torch.stack(r.fed_thoughts) for r in refs]).mean(0)
    layer = torch.stack([torch.stack(r.layer_outputs[LAYER])[1:, 0] for r in refs]).mean(0)
    assert torch.allclose(mean["input"], fed, rtol=1e-3, atol=1e-3)
    assert torch.allclose(mean[f"layer:{LAYER}"], layer, rtol=1e-3, atol=1e-3)
    moments = compute_thought_moments(model, tokenizer, questions, sites=("input", f"layer:{LAYER}"), batch_size=2)
    fed_std = torch.stack([torch.stack(r.fed_thoughts) for r in refs]).std(0)          # n - 1 denominator
    layer_std = torch.stack([torch.stack(r.layer_outputs[LAYER])[1:, 0] for r in refs]).std(0)
    assert torch.allclose(moments["input"][1], fed_std, rtol=1e-3, atol=1e-3)
    assert torch.allclose(moments[f"layer:{LAYER}"][1], layer_std, rtol=1e-3, atol=1e-3)
    assert torch.equal(moments["input"][0], mean["input"])
    compat = compute_mean_thoughts(model, tokenizer, questions, sites=(f"layer:{LAYER}",), compat_researchers=True)
    assert compat[f"layer:{LAYER}"].shape == (6, model.hidden_size)  # bot + five fed thoughts


def test_hooks_are_removed_even_when_a_run_fails(model, tokenizer, problems):
    def hook_counts():  # transformers may keep hooks of its own; ours must not accumulate
        return [len(layer._forward_hooks) for layer in model.decoder_layers]

    before = hook_counts()
    spec = AblationSpec(sites=("layer:1",), max_new_tokens=2)
    run_ablations(model, tokenizer, problems.head(1), spec)
    assert hook_counts() == before
    bad = ThoughtEdit("layer:1", {0: torch.zeros(3)})  # wrong width: fails inside the hook
    with pytest.raises(RuntimeError):
        reference_answer_one(model, tokenizer, problems["question"][0], bad, max_new_tokens=2)
    assert hook_counts() == before


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(modes=("shuffle",)), "unknown ablation mode"),
        (dict(schemes=("suffix",)), "unknown ablation scheme"),
        (dict(sites=("layer8",)), "unknown ablation site"),
        (dict(sites=("input",), compat_researchers=True), "not the 'input' site"),
    ],
)
def test_spec_validation(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        AblationSpec(**kwargs)


def test_run_time_validation(model, tokenizer, problems):
    with pytest.raises(ValueError, match="layer:9 does not exist"):
        run_ablations(model, tokenizer, problems.head(1), AblationSpec(sites=("layer:9",), max_new_tokens=2))
    with pytest.raises(ValueError, match="prefix size 7 out of range"):
        run_ablations(model, tokenizer, problems.head(1), AblationSpec(prefix_sizes=(7,), max_new_tokens=2))
    with pytest.raises(ValueError, match="no 'question' column"):
        run_ablations(model, tokenizer, problems.drop("question"), AblationSpec())
    empty = run_ablations(model, tokenizer, problems.head(0), AblationSpec())
    assert empty.is_empty() and empty.schema == pl.Schema(ROW_SCHEMA)


@pytest.fixture(scope="module")
def checkpoint_row(model, tokenizer, tmp_path_factory):
    """The tiny model saved as a CODI checkpoint with its base directory, described as the
    ``codi_model`` asset's row."""
    import copy

    from polydag.core.step_importance import api
    from polydag.core.step_importance.model import save_codi_checkpoint

    root = tmp_path_factory.mktemp("ckpt")
    save_codi_checkpoint(model, root)
    base_config = copy.deepcopy(model.causal_lm.config)
    base_config.vocab_size = len(tokenizer)
    base_config.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    info = api.CodiModelInfo(kind="default", path=str(root), base_model_path=str(root / "base"), lora_r=4,
                             lora_alpha=8, target_modules=",".join(LLAMA_TARGET_MODULES), prj_dim=32, num_latent=6,
                             sha256="-", n_params=model.n_params())
    return api.info_as_row(info)


def test_a_bfloat16_run_reports_how_often_its_answers_differ_from_float32(checkpoint_row, problems):
    from polydag.core.step_importance import api
    from polydag.core.step_importance.config import StepImportanceConfig

    cfg = StepImportanceConfig(device="cpu", dtype="bfloat16", max_new_tokens=MAX_NEW)
    rows = api.run_step_importance(checkpoint_row, problems, cfg)
    fp32 = api.run_step_importance(checkpoint_row, problems, StepImportanceConfig(device="cpu", dtype="float32",
                                                                                  max_new_tokens=MAX_NEW))
    report = api.float32_agreement(checkpoint_row, rows, problems, cfg)
    assert report["dtype"] == "bfloat16"
    stats = report["vs_float32"]
    assert stats["n_rows_compared"] == rows.height == fp32.height    # under 10 problems: all re-checked
    differs = int((~rows["predicted"].eq_missing(fp32["predicted"])).sum())
    assert stats["n_answer_differs"] == differs
    assert api.float32_agreement(checkpoint_row, fp32, problems, dataclasses.replace(cfg, dtype="float32")) == \
        {"dtype": "float32"}


def test_gaussian_values_match_the_moments_and_depend_only_on_id_site_and_seed():
    mean = torch.linspace(-2, 2, 6 * 8).reshape(6, 8)
    std = torch.linspace(0.1, 3, 6 * 8).reshape(6, 8)
    draws = torch.stack([gaussian_values(f"p{i}", "input", mean, std, seed=0) for i in range(4000)])
    assert torch.allclose(draws.mean(0), mean, atol=0.15)
    assert torch.allclose(draws.std(0) / std, torch.ones_like(std), atol=0.08)
    assert torch.equal(gaussian_values("p1", "input", mean, std, 0), gaussian_values("p1", "input", mean, std, 0))
    assert not torch.equal(gaussian_values("p1", "input", mean, std, 0), gaussian_values("p1", "input", mean, std, 1))
    assert not torch.equal(gaussian_values("p1", "input", mean, std, 0), gaussian_values("p1", "layer:1", mean, std, 0))
    assert torch.equal(gaussian_values("p1", "input", mean, torch.zeros_like(std), 0), mean)


def _shifted_cache_engine(model, question_ids, **kwargs):
    """A deliberately broken engine: every question's cache is shifted by one (its first
    token, BOS, is dropped), so every later position is off by one."""
    return run_thought_loop(model, [list(ids[1:]) for ids in question_ids], **kwargs)


@pytest.mark.parametrize("broken", [False, True], ids=["real-engine", "shifted-cache"])
def test_runtime_reference_gate_passes_the_engine_and_blocks_a_broken_one(model, tokenizer, problems, broken):
    spec = AblationSpec(schemes=("prefix", "single"), modes=MODES, prefix_sizes=(3,),
                        single_positions=(5,), max_new_tokens=MAX_NEW)
    sample = problems["problem_id"].to_list()[:2]
    rows = run_ablations(model, tokenizer, problems.head(3), spec, chunk_size=2, reference_problems=problems,
                         reference_problem_ids=sample,
                         **({"engine": _shifted_cache_engine} if broken else {}))
    checked = rows.filter(pl.col("reference_checked"))
    assert sorted(checked["problem_id"].unique().to_list()) == sorted(sample)
    assert checked.height == 2 * len(spec.variants(make_protocol(model)))
    assert rows.filter(~pl.col("reference_checked"))["reference_answer_text"].null_count() == rows.height - checked.height
    mismatches = reference_mismatches(rows)
    if broken:
        assert mismatches.height > 0
    else:
        assert mismatches.is_empty()


def test_a_run_re_answers_all_its_problems_when_small(checkpoint_row, problems):
    from polydag.core.step_importance import api
    from polydag.core.step_importance.config import StepImportanceConfig

    rows = api.run_step_importance(checkpoint_row, problems, StepImportanceConfig(device="cpu", dtype="float32",
                                                                                  max_new_tokens=MAX_NEW))
    assert rows["reference_checked"].all()                  # 5 problems < reference_all_below
    assert reference_mismatches(rows).is_empty()
