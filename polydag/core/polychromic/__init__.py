"""The polychromic sweep's training half: reply-pair data, λ keys, the base model, the one
sampler, the diversity objective, the LoRA trainer, and the validators of training (the
gradient audit and the collapse flags)."""
