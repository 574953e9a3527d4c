"""What each table in ``data/polydag.duckdb`` holds, column by column (shown by ``polydag tables``).

One entry per table: ``{column: description}``. A column name may be a pattern with ``*``
(``fnmatch``) for families of columns, e.g. ``*_se``. ``polydag tables`` lists the columns the
database really has, each with its description, marks the ones documented here that the
table lacks and the ones it has that are not documented, so this file and the tables cannot
drift apart unnoticed.

Tables whose columns are still to be written down are listed in ``UNDOCUMENTED_TABLES``.
"""

from __future__ import annotations

import fnmatch

_LAMBDA = {
    "lambda_key": "λ partition key as text, e.g. '0.0', '1.0' (canonical: see polydag.core.polychromic.lambdas)",
    "diversity_weight": "λ as a number: weight of the diversity term in the training loss",
}

# training seeds (polydag.core.evaluation.metrics.seeds): a table from before seeds is seed "0"
_SEED = {
    "seed_key": "training seed partition key as text, e.g. '0'; 'pooled' marks a row aggregated over the "
                "λ's seeds (summary, comparison, trend tables only)",
    "seed": "the training seed as an integer (null on pooled rows)",
}

TABLE_DOCS: dict[str, dict[str, str]] = {
    "reply_pairs": {
        "id": "row id from the source file (generated when the file has none)",
        "prompt": "the prompt text",
        "reply": "the gold reply text",
        "intent": "ground truth (optional column): the gold reply's intent (agree, joke, hype, ask, cheer, advise, "
                  "story, disagree in the shipped data)",
        "topic": "ground truth (optional column): the prompt's topic, which every gold reply is on",
        "admitted_intents": "ground truth (optional column): the intents a reply to the prompt may have",
        "prompt_id": "stable id of the prompt text (hash); the unit of the train/val/test split",
        "split": "train | val | test, grouped by prompt, deterministic in split_seed",
    },
    "base_model": {
        "path": "directory of the Hugging Face model every λ adapter starts from",
        "source": "built-in-pipeline (tiny model built and pretrained here) | local",
        "n_params": "number of parameters (from the safetensors headers)",
        "weights_sha256": "sha256 over the *.safetensors files",
        "pretrain_final_loss": "mean loss of the last pretraining steps (null for a local model)",
        "wall_s": "seconds to build or resolve the model",
        "device": "device it was built on (cpu | cuda)",
        "sample_replies": "a few 'prompt -> reply' samples after pretraining",
    },
    "lora_checkpoints": {
        **_LAMBDA,
        "adapter_dir": "directory of the peft adapter (save_pretrained)",
        "adapter_sha256": "sha256 of the adapter weights",
        "steps": "optimizer steps taken",
        "wall_s": "training seconds",
        "device": "device trained on",
        "peak_memory_bytes": "CUDA max allocated on GPU; process peak RSS on CPU",
        "final_quality_loss": "cross-entropy on the gold replies at the last step",
        "final_diversity_score": "set diversity D of the samples at the last diversity step",
        "final_diversity_loss": "diversity surrogate loss at the last diversity step",
        "final_combined_loss": "quality loss + diversity loss at the last step",
        "mean_diversity_grad_share": "mean over diversity steps of ‖g_div‖ / (‖g_quality‖ + ‖g_div‖)",
        "n_diversity_steps": "steps that sampled replies and formed the diversity term",
        "n_effective_diversity_steps": "diversity steps whose advantages were not all zero (they can move the "
                                       "policy toward diversity)",
        "mean_advantage_std": "mean over diversity steps of the advantages' standard deviation",
        "kl_to_base": "mean per-token KL(adapter ‖ base) in nats on the gold replies of the gate pairs: how far "
                      "training moved the policy",
        "grad_shares": "diversity_grad_share of each diversity step",
        "base_model_path": "base model the adapter was trained from",
        "base_model_sha256": "weights_sha256 of that base model",
        "train_config": "JSON of the full training config",
        "base_eval_loss": "quality loss of the base model on the gate pairs, before training",
        "eval_loss": "quality loss of the trained adapter on the same pairs",
        "vocab_size": "tokenizer vocabulary (ln of it is a uniform model's loss)",
        "gates_passed": "the adapter passed every training gate before it was stored (always true here)",
        "gates": "JSON list of the gates: finite, not_collapsed, diversity_gradient, each with its numbers",
    },
    "training_log": {
        "seq": "strictly increasing sequence number (a sensor's cursor)",
        "run_id": "Dagster run that wrote the row",
        "lambda_key": "λ partition key",
        "diversity_weight": "λ",
        "step": "optimizer step",
        "quality_loss": "cross-entropy on the gold replies of the batch",
        "diversity_score": "set diversity D of the sampled replies (diversity steps only)",
        "diversity_loss": "diversity surrogate loss −λ·mean(A_i·ℓ_i) (diversity steps only)",
        "combined_loss": "quality_loss + diversity_loss",
        "diversity_grad_share": "‖g_div‖ / (‖g_quality‖ + ‖g_div‖) of this step",
        "advantage_std": "standard deviation of the step's per-sample diversity advantages A_i (the "
                         "score-function signal; 0: every sample got the same advantage, no diversity gradient)",
        "tied_prompt_share": "share of the step's prompts whose sampled replies all got advantage 0 (e.g. all "
                             "identical): they carry no diversity signal",
        "learning_rate": "learning rate of the step",
        "wall_time": "seconds since training started",
        "logged_at": "when the row was written",
        "train_id": "the training the row belongs to: a hash of config, data and base weights (one training "
                    "may span runs when a crashed run resumes)",
        "committed": "the training succeeded and this is the λ's official log (false while it runs; a dead "
                     "run's rows are removed when the next run of that λ starts)",
    },
    "generations": {
        **_LAMBDA,
        "prompt_id": "test prompt id",
        "prompt": "test prompt text",
        "sample_idx": "index of the sample for this prompt (0 .. n_samples-1)",
        "text": "the sampled reply",
        "passed": "whether the quality checker accepted the reply",
        "quality_reasons": "why the checker rejected it (';'-separated '<code>: detail'; empty when passed)",
        "quality_checker": "the checker that judged it: ground_truth (the verifier), relevance, or a function's "
                           "import path",
        "reply_intent": "the verifier's intent of the reply under the default grammar (null: no template "
                        "matched, or the prompts carry no ground truth)",
        "reply_topic": "the verifier's topic of the reply (null: not well formed, or no ground truth)",
        "adapter_sha256": "adapter the sample was drawn from",
        "cache_key": "hash of adapter + generation + checker config, base model, prompt set, device and "
                     "dtype (reuse of stored samples)",
    },
    "generation_batches": {
        "cache_key": "generations cache key of the draw the rows belong to (a rerun under another key "
                     "never uses them)",
        "lambda_key": "λ partition key",
        "prompt_id": "test prompt id",
        "sample_idx": "index of the sample for this prompt (0 .. n_samples-1)",
        "text": "the sampled reply, kept when its prompt batch finished, before the partition is stored",
        "written_at": "when the batch was written",
    },
    "metrics": {
        **_LAMBDA,
        "prompt_id": "test prompt id",
        "n_samples": "samples of this prompt",
        "n_passed": "samples the quality checker accepted",
        "distinct_1": "distinct unigrams / all unigrams over the prompt's samples",
        "distinct_2": "distinct bigrams / all bigrams over the prompt's samples",
        "self_bleu": "mean BLEU of each sample against the others (lower is more diverse)",
        "semantic_diversity": "mean pairwise cosine distance of the sample embeddings (MiniLM)",
        "vendi": "Vendi score of the sample embeddings (effective number of distinct samples)",
        "self_bleu_signature": "sacrebleu settings of self_bleu (one BLEU object built per process)",
        **_SEED,
        "distinct_k": "NoveltyBench distinct_k: equivalence classes among the prompt's quality (passed) replies "
                      "(ground-truth intents, else an embedding partition: see distinct_k_source)",
        "coverage": "distinct admitted intents among the quality replies / intents the prompt admits (null "
                    "without ground truth)",
        "pass_at_*_distinct_*": "chance that k samples drawn without replacement contain >= m distinct classes "
                                "of quality replies (exact; k, m from DistinctClassesConfig)",
        "n_classed": "quality replies that were classed (with an intent, or embedded)",
        "n_admitted_intents": "intents the prompt admits (null without ground truth)",
        "distinct_k_source": "intent (ground-truth reply_intent) | embedding (MiniLM complete-linkage partition)",
        "class_similarity_threshold": "cosine threshold of the embedding partition (null when classes are intents)",
    },
    "metrics_summary": {
        **_LAMBDA,
        "n_prompts": "test prompts",
        "n_samples": "samples in all",
        "n_passed": "accepted samples in all",
        "distinct_1": "mean over prompts", "distinct_2": "mean over prompts",
        "self_bleu": "mean over prompts", "semantic_diversity": "mean over prompts",
        "vendi": "mean over prompts",
        **_SEED,
        "n_seeds": "seeds in the row (1, or the λ's seeds on its pooled row: per prompt the mean over seeds)",
        "distinct_k": "mean over prompts", "coverage": "mean over prompts",
        # patterns are tried in order: the suffixes first, so pass_at_10_se is an SE
        "*_se": "bootstrap standard error of that mean",
        "*_n": "prompts that have a value for that metric",
        "pass_at_*_distinct_*": "mean over prompts of the chance that k samples hold >= m distinct classes",
        "pass_at_*": "mean over prompts of the unbiased pass@k (Chen et al. 2021)",
    },
    "comparison": {
        **_LAMBDA,
        "baseline_key": "the λ compared against (0.0)",
        **_SEED,
        "aggregation": "seed (this seed against λ = 0 of the same seed) | mean_over_seeds (pooled: per prompt "
                       "the mean over the λ's seeds, then the same paired test over prompts)",
        "n_seeds": "seeds compared (1 on a seed row)",
        "metric": "metric name",
        "higher_is_better": "direction of the metric",
        "n_pairs": "prompts present under both λ",
        "value": "mean of the metric at this λ",
        "baseline": "mean of the metric at the baseline λ",
        "diff": "value − baseline",
        "rel_change": "diff / baseline",
        "ci_low": "lower end of the paired bootstrap CI of the mean difference",
        "ci_high": "upper end of that CI",
        "ci_method": "how the CI was computed",
        "p_wilcoxon": "two-sided Wilcoxon signed-rank p over prompts",
        "p_holm": "Holm-adjusted p across λ, per metric and seed key",
        "cohens_dz": "paired effect size mean(d) / sd(d)",
    },
    "verdict": {
        **_LAMBDA,
        "*_rel_change": "relative change of the metric against λ = 0",
        "*_p": "the p-value used for significance (Holm-adjusted)",
        "*_significant": "p < alpha",
        "*_workshop_met": "the metric meets the workshop bar (and is significant)",
        "*_main_conference_met": "the metric meets the main-conference bar (and is significant)",
        "*_similar": "pass@1 within the tolerance of the baseline",
        "n_seeds": "training seeds of the λ",
        "*_n_seeds_better": "seeds whose own mean change against λ = 0 is in the metric's better direction",
        "*_seed_consistent": "every seed in the better direction and the pooled test significant (null: unassessed)",
        "*_trend_p": "Page's one-sided p of the metric getting better as λ grows (pooled; same on every row)",
        "*_trend_significant": "*_trend_p < alpha",
        "seed_consistency_assessed": "the λ has at least min_seeds seeds",
        "seed_consistent": "every bar metric is seed-consistent (null: unassessed)",
        "workshop_met": "every workshop bar met",
        "main_conference_met": "every main-conference bar met, and seed-consistent (never while unassessed)",
    },
    "dose_response": {
        **_SEED,
        "n_seeds": "seeds averaged (pooled row) or 1",
        "metric": "metric name",
        "higher_is_better": "direction of the metric",
        "lambda_keys": "the λ values tested, ascending, comma-separated",
        "n_lambdas": "λ values tested (the test needs >= 3)",
        "n_prompts": "prompts with a value under every λ (the blocks)",
        "page_l": "Page's L of the 'better as λ grows' ordering",
        "p_better": "one-sided p: the metric gets better as λ grows (scipy.stats.page_trend_test)",
        "p_worse": "one-sided p: the metric gets worse as λ grows",
        "method": "exact or asymptotic (asymptotic when a prompt has tied values)",
        "note": "why p is null, if it is",
    },
    "metric_validity": {
        "metric": "diversity metric",
        "higher_is_better": "direction of the metric (Self-BLEU: lower is more diverse)",
        "target": "the ground truth it is ranked against (distinct_k from reply intents)",
        "n_rows": "(prompt, λ, seed) rows with both values",
        "n_prompts": "prompts among them (the bootstrap's resampled unit)",
        "spearman_rho": "Spearman rank correlation with distinct_k",
        "rho_oriented": "spearman_rho × −1 for lower-is-more-diverse metrics: > 0 means it tracks real diversity",
        "ci_low": "lower end of the 95% prompt-bootstrap CI of rho_oriented",
        "ci_high": "upper end of that CI",
        "ci_method": "BCa, or percentile where BCa is undefined",
        "resampled": "the bootstrap's unit (prompts)",
        "note": "why the correlation is null, if it is (e.g. no ground truth)",
    },
    "alerts": {
        "alert_id": "hash of (source, kind, run_id, lambda_key, subject): one row per distinct alert",
        "seq": "increasing insertion sequence",
        "created_at": "when the sensor stored the alert",
        "source": "training (from training_log) | evaluation (from comparison/metrics_summary)",
        "kind": "nonfinite | diversity_floor | diversity_drop | grad_share_zero | "
                "combined_not_below_quality | diversity_worse | pass_at_k_collapse "
                "(see polydag.core.polychromic.collapse)",
        "lambda_key": "λ partition key the alert is about",
        "run_id": "training run that logged the rows, or the run that materialized comparison",
        "step": "training step of the flagged window's end (null for evaluation alerts)",
        "value": "the flagged quantity (window mean, relative drop, grad share, p_holm, rel change)",
        "threshold": "the configured threshold it crossed",
        "message": "human-readable explanation",
        "details": "JSON with the extra numbers (metric, early/window means, ...)",
    },
    "costs": {
        "run_id": "Dagster run of the materialization",
        "asset": "asset key (e.g. lora_checkpoints)",
        "partition_keys": "JSON list of the partition keys the step materialized ([] if unpartitioned)",
        "device": "device it ran on: cpu | cuda | cuda:N",
        "n_devices": "devices the step held",
        "wall_s": "wall seconds of the step",
        "device_hours": "wall_s / 3600 × n_devices",
        "gpu_hours": "device_hours on a GPU, 0 on the CPU",
        "price_per_hour": "configured USD per device-hour (CostModel cpu_hour_usd or gpu_hour_usd)",
        "cost_usd": "device_hours × price_per_hour (an estimate)",
        "recorded_at": "when the row was written (UTC)",
    },
    "problems": {
        "problem_id": "stable id: the record's own id, else p + 10 hex of sha256(question)",
        "question": "problem text",
        "answer": "gold answer, normalized number as text (commas removed, 7.0 -> 7)",
        "n_steps": "number of <<expr=result>> annotations (else non-empty solution lines)",
        "n_lines": "non-empty solution lines before ####",
        "difficulty": "bucket of n_steps: <=2, 3, 4, 5+",
    },
    "codi_model": {
        "kind": "default (trained in the pipeline) or checkpoint (a CODI checkpoint)",
        "path": "checkpoint directory (CODI key layout)",
        "base_model_path": "directory of the base model's config and tokenizer",
        "lora_r": "LoRA rank",
        "lora_alpha": "LoRA alpha",
        "target_modules": "comma-separated LoRA target modules",
        "prj_dim": "projection width",
        "num_latent": "latent thoughts per question",
        "sha256": "sha256 of the weights file",
        "n_params": "parameters of the whole model",
        "heldout_accuracy": "baseline accuracy on held-out problems (default model only)",
        "chance_accuracy": "accuracy of always answering the most common answer",
        "latent_thoughts": "used, or constant (every fed thought one fixed vector: read from the weights)",
        "*": "training details of the default model (steps, wall time, accuracies)",
    },
    "codi_control_model": {
        "kind": "default (trained in the pipeline with constant thoughts) or checkpoint (your control)",
        "path": "checkpoint directory (CODI key layout)",
        "latent_thoughts": "constant for a control that cannot carry information through its thoughts",
        "*": "the columns of codi_model, for the control model",
    },
    "step_importance_control": {
        "problem_id": "the problem (the partition key)",
        "variant": "stable id of the ablation variant (the same ids as step_importance)",
        "*": "the columns of step_importance, for the control model",
    },
    "step_importance": {
        "problem_id": "the problem (the partition key)",
        "variant": "stable id of the ablation variant",
        "protocol": "polydag, or researchers (compat_researchers rows)",
        "scheme": "baseline | null | prefix | single",
        "mode": "zero | mean | global_mean | gaussian | resample",
        "site": "input | layer:L",
        "position": "thought position of the variant (-1 for baseline and null)",
        "ablated_positions": "comma-separated positions ablated",
        "partner_id": "problem whose thoughts were used (resample)",
        "answer_text": "decoded answer text",
        "predicted": "the number extracted CODI's way (last number, commas removed)",
        "gold": "gold answer",
        "correct": "predicted equals gold",
        "baseline_correct": "the baseline row of this problem was correct",
        "flipped": "correctness differs from the baseline",
        "answer_changed": "predicted differs from the baseline's",
        "gold_logprob": "teacher-forced log-probability of the gold answer after eot",
        "kl_to_baseline": "KL(baseline || variant) at the first answer token",
        "n_answer_tokens": "tokens decoded",
        "reference_checked": "this row was also answered by the one-row reference loop (the runtime gate's sample)",
        "reference_answer_text": "the one-row reference loop's answer text (null when not checked)",
    },
    "step_importance_summary": {
        "view": "baseline | null_control | by_position | by_difficulty | early_late | trend | control_baseline",
        "importance": "share of baseline-correct problems the ablation made wrong",
        "importance_lo": "Wilson 95% lower bound",
        "importance_hi": "Wilson 95% upper bound",
        "control_importance": "by_position: the control model's importance at the same variant (null: no control rows)",
        "control_importance_lo": "Wilson 95% lower bound of the control's importance",
        "control_importance_hi": "Wilson 95% upper bound of the control's importance",
        "within_control_band": "by_position: the importance lies in the control's band (indistinguishable from a "
                               "model that does not use its latents)",
        "*": "grouping and count columns of the view",
    },
}

# Tables whose column descriptions are still to be written (the lead fills these in).
UNDOCUMENTED_TABLES: tuple[str, ...] = ()


def describe_column(table: str, column: str) -> str | None:
    """The description of ``table.column``: exact name first, then the first matching pattern."""
    docs = TABLE_DOCS.get(table, {})
    if column in docs:
        return docs[column]
    for pattern, text in docs.items():
        if "*" in pattern and fnmatch.fnmatchcase(column, pattern):
            return text
    return None


def documented_columns_missing(table: str, columns: list[str]) -> list[str]:
    """Exact column names documented for ``table`` that ``columns`` lacks (patterns excluded)."""
    return [c for c in TABLE_DOCS.get(table, {}) if "*" not in c and c not in columns]
