"""Continuous-thought (CODI-style) models and the step-importance ablation engine.

Modules, each with one job (none imports dagster; torch/transformers are imported lazily
where that keeps ``import polydag.core.step_importance.<module>`` cheap):

- ``model``: ``ContinuousThoughtModel`` (peft-LoRA causal LM + CODI projection), strict loading
  and saving of checkpoints in CODI's key layout, and the tiny LLaMA used offline and in tests.
- ``answers``: CODI's answer template and answer extraction (no torch).
- ``tiny_tokenizer``: the word-level tokenizer of the offline default model.
- ``inference``: CODI inference (question, bot, latent steps, eot, greedy answer), batched and
  the one-row reference loop that mirrors CODI's test.py.
- ``ablation``: ablation variants and the batched engine that runs them with a null control.
- ``train``: trains the offline default model through the latent loop.
- ``summary``: importance by position/difficulty with Wilson CIs, trend tests and the plot.
- ``api``: the few entry points the Dagster layer calls.
"""
