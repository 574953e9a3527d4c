"""The batched engine's KV cache: one copy of each question's prefix, per-row suffixes.

Every ablation variant of a problem reads the same question. transformers' ``DynamicCache``
with ``batch_repeat_interleave`` stores that prefix once per variant (14-62 copies), attention
re-reads every copy on every step, and ``DynamicLayer`` grows by ``torch.cat`` so each step
also copies the whole cache (O(L^2) traffic per row). On the default model those two costs
were 0.5 s and 0.3 s of a 2.0 s sweep of 32 problems (cProfile, 1 thread).

:class:`SharedPrefixCache` keeps:

- the **prefix**: keys and values of the left-padded question tokens, one row per question
  ``(P, H_kv, L_p, D)``, and which of its positions are real tokens;
- the **suffix**: everything after the question (bot, latent steps, eot, decoded tokens), one
  row per *physical* row of the engine, in a buffer with spare capacity so an append writes one
  position (amortised O(1), capacity doubled when full);
- ``row_problem``: the question of each physical row.

:func:`shared_prefix_attention` is the attention that reads it (cascade attention: scores
against the question once per problem for all of its rows, then against each row's suffix,
one softmax over both). It is registered with transformers' ``AttentionInterface`` and only
switched on inside :func:`engine_attention`, so every other caller of the model (the one-row
reference loop, training) runs the model's own attention unchanged. Hand-written because
transformers has no shared-prefix cache; the layer classes keep ``DynamicLayer``'s interface
(``update``, ``crop``, ``batch_select_indices``, ``get_seq_length``).

Prefill (the question tokens) runs through PyTorch's SDPA with a causal + padding mask.
Scores and the softmax are computed in float32 whatever the model dtype.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import torch
from transformers.cache_utils import Cache, DynamicLayer

ATTENTION_NAME = "polydag_shared_prefix"
_ACTIVE: contextvars.ContextVar["SharedPrefixCache | None"] = contextvars.ContextVar("polydag_shared_cache",
                                                                                      default=None)


class SharedPrefixLayer(DynamicLayer):
    """One decoder layer's prefix (per question) and suffix (per physical row)."""

    def __init__(self, reserve: int = 16):
        super().__init__()
        self.reserve = int(reserve)
        self.prefix_keys: torch.Tensor | None = None
        self.prefix_values: torch.Tensor | None = None
        self.length = 0                      # filled suffix positions
        self._k: torch.Tensor | None = None  # suffix buffers (rows, H_kv, capacity, D)
        self._v: torch.Tensor | None = None
        self.in_suffix = False

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self.is_initialized = True

    def _views(self) -> None:
        self.keys = self._k[..., : self.length, :]
        self.values = self._v[..., : self.length, :]

    def _reallocate(self, rows: int, capacity: int, like_k, like_v, index: torch.Tensor | None = None) -> None:
        k = like_k.new_empty((rows, like_k.shape[1], capacity, like_k.shape[3]))
        v = like_v.new_empty((rows, like_v.shape[1], capacity, like_v.shape[3]))
        if self._k is not None and self.length:
            old_k, old_v = self._k[..., : self.length, :], self._v[..., : self.length, :]
            if index is not None:
                old_k, old_v = old_k.index_select(0, index), old_v.index_select(0, index)
            k[..., : self.length, :] = old_k
            v[..., : self.length, :] = old_v
        self._k, self._v = k, v

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if not self.in_suffix:
            if self.prefix_keys is not None:
                raise RuntimeError("the shared prefix is written once, by the prefill")
            self.prefix_keys, self.prefix_values = key_states, value_states
            return key_states, value_states
        new = key_states.shape[-2]
        need = self.length + new
        if self._k is None or need > self._k.shape[-2]:
            capacity = max(need + self.reserve, 2 * (self._k.shape[-2] if self._k is not None else 0))
            self._reallocate(key_states.shape[0], capacity, key_states, value_states)
        self._k[..., self.length: need, :] = key_states
        self._v[..., self.length: need, :] = value_states
        self.length = need
        self._views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        prefix = 0 if self.prefix_keys is None else self.prefix_keys.shape[-2]
        return prefix + self.length

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        if tokens_to_remove == 0 or self._k is None:
            return
        if abs(tokens_to_remove) > self.length:
            raise ValueError("cannot crop into the shared prefix")
        self.length -= abs(tokens_to_remove)
        self._views()

    def select_rows(self, index: torch.Tensor) -> None:
        """Physical suffix rows become ``index`` (a gather: repeats fork a row)."""
        if self._k is None or self.length == 0:
            return
        self._reallocate(int(index.numel()), self._k.shape[-2], self._k, self._v, index)
        self._views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.select_rows(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("SharedPrefixCache forks rows with SharedPrefixCache.select_rows")


class SharedPrefixCache(Cache):
    """See the module docstring. Built empty; the prefill writes the prefix, then
    :meth:`start_suffix` starts one physical row per question."""

    def __init__(self, n_layers: int, prefix_mask: torch.Tensor, reserve: int = 16):
        super().__init__(layers=[SharedPrefixLayer(reserve) for _ in range(n_layers)])
        self.prefix_mask = prefix_mask.to(torch.bool)          # (P, L_p) real tokens
        self.prefix_len = self.prefix_mask.sum(-1)             # (P,)
        self.row_problem = torch.arange(prefix_mask.shape[0], device=prefix_mask.device)
        self.in_suffix = False
        self._groups()

    @property
    def suffix_length(self) -> int:
        return self.layers[0].length

    def start_suffix(self) -> None:
        self.in_suffix = True
        for layer in self.layers:
            layer.in_suffix = True

    def positions(self, width: int = 1) -> torch.Tensor:
        """Position ids of the next ``width`` suffix positions of every physical row."""
        start = self.prefix_len[self.row_problem] + self.suffix_length
        return start[:, None] + torch.arange(width, device=start.device)[None, :]

    def select_rows(self, index: torch.Tensor) -> None:
        index = index.to(self.row_problem.device)
        for layer in self.layers:
            layer.select_rows(index)
        self.row_problem = self.row_problem[index]
        self._groups()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.select_rows(indices)

    def _groups(self) -> None:
        """``group_rows`` (P, G): the physical rows of each question (``R`` = an empty slot),
        ``row_slot`` (R,): each row's flat index ``p * G + g`` in that table."""
        rows = self.row_problem
        n_rows, n_problems = rows.numel(), self.prefix_mask.shape[0]
        device = rows.device
        counts = torch.bincount(rows, minlength=n_problems)
        width = max(1, int(counts.max()) if n_rows else 1)
        order = torch.argsort(rows, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.empty(n_rows, dtype=torch.long, device=device)
        rank[order] = torch.arange(n_rows, device=device) - starts[rows[order]]
        self.row_slot = rows * width + rank
        table = torch.full((n_problems * width,), n_rows, dtype=torch.long, device=device)
        table[self.row_slot] = torch.arange(n_rows, device=device)
        self.group_rows = table.view(n_problems, width)
        self.group_width = width


def _prefill_attention(module, query, key, value, cache: SharedPrefixCache, scaling):
    """Causal + padding SDPA over the question tokens (a padded query attends to itself, so
    no row of the softmax is empty and no NaN reaches the cache)."""
    length = query.shape[2]
    causal = torch.ones(length, length, dtype=torch.bool, device=query.device).tril()
    mask = causal[None] & cache.prefix_mask[:, None, :]
    mask = mask | torch.eye(length, dtype=torch.bool, device=query.device)[None]
    rep = query.shape[1] // key.shape[1]
    if rep > 1:
        key = key.repeat_interleave(rep, dim=1)
        value = value.repeat_interleave(rep, dim=1)
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask[:, None],
                                                           scale=scaling)
    return out.transpose(1, 2).contiguous()


def shared_prefix_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention interface: cascade attention over :class:`SharedPrefixCache`."""
    cache = _ACTIVE.get()
    if cache is None:
        raise RuntimeError(f"{ATTENTION_NAME} attention runs only inside engine_attention()")
    scaling = module.scaling if scaling is None else scaling
    if not cache.in_suffix:
        return _prefill_attention(module, query, key, value, cache, scaling), None
    layer = cache.layers[module.layer_idx]
    prefix_k, prefix_v = layer.prefix_keys, layer.prefix_values          # (P, Hkv, Lp, D)
    rows, heads, q_len, dim = query.shape
    n_problems, kv_heads, prefix_len = prefix_k.shape[0], prefix_k.shape[1], prefix_k.shape[2]
    rep = heads // kv_heads
    width = cache.group_width
    # queries of kv head h are heads h*rep .. h*rep+rep-1 (transformers' repeat_kv order)
    q = query.reshape(rows, kv_heads, rep * q_len, dim)
    padded = torch.cat([q, q.new_zeros((1,) + q.shape[1:])], dim=0)
    grouped = padded[cache.group_rows].permute(0, 2, 1, 3, 4).reshape(n_problems, kv_heads, width * rep * q_len, dim)
    scores_prefix = torch.matmul(grouped, prefix_k.transpose(-1, -2))     # (P, Hkv, G*rep*q, Lp)
    scores_prefix = (scores_prefix.view(n_problems, kv_heads, width, rep * q_len, prefix_len)
                     .permute(0, 2, 1, 3, 4).reshape(n_problems * width, kv_heads, rep * q_len, prefix_len)
                     [cache.row_slot])
    scores_suffix = torch.matmul(q, key.transpose(-1, -2))               # (R, Hkv, rep*q, Ls)
    suffix_len = key.shape[2]
    scores = torch.cat([scores_prefix, scores_suffix], dim=-1).float() * scaling
    valid = torch.ones(rows, 1, 1, prefix_len + suffix_len, dtype=torch.bool, device=query.device)
    valid[..., :prefix_len] = cache.prefix_mask[cache.row_problem][:, None, None, :]
    if q_len > 1:   # causal inside the block: query t sees suffix keys up to Ls - q_len + t
        t = torch.arange(rep * q_len, device=query.device) % q_len
        j = torch.arange(suffix_len, device=query.device)
        valid = valid.expand(rows, 1, rep * q_len, prefix_len + suffix_len).clone()
        valid[..., prefix_len:] &= (j[None, :] <= (suffix_len - q_len + t)[:, None])[None, None]
    weights = torch.softmax(scores.masked_fill(~valid, float("-inf")), dim=-1).to(value.dtype)
    out = torch.matmul(weights[..., prefix_len:], value)                  # (R, Hkv, rep*q, D)
    w_prefix = weights[..., :prefix_len]
    table = w_prefix.new_zeros((n_problems * width,) + w_prefix.shape[1:])
    table[cache.row_slot] = w_prefix
    table = table.view(n_problems, width, kv_heads, rep * q_len, prefix_len).permute(0, 2, 1, 3, 4)
    out_prefix = torch.matmul(table.reshape(n_problems, kv_heads, width * rep * q_len, prefix_len), prefix_v)
    out_prefix = (out_prefix.view(n_problems, kv_heads, width, rep * q_len, dim).permute(0, 2, 1, 3, 4)
                  .reshape(n_problems * width, kv_heads, rep * q_len, dim)[cache.row_slot])
    out = (out + out_prefix).view(rows, heads, q_len, dim)
    return out.transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, shared_prefix_attention)


@contextlib.contextmanager
def engine_attention(model, cache: SharedPrefixCache) -> Iterator[None]:
    """Run ``model`` with :func:`shared_prefix_attention` over ``cache`` for the block; the
    model's own attention implementation is restored afterwards (also on error)."""
    _register()
    config = model.causal_lm.config
    previous = config._attn_implementation
    token = _ACTIVE.set(cache)
    config._attn_implementation = ATTENTION_NAME
    try:
        yield
    finally:
        config._attn_implementation = previous
        _ACTIVE.reset(token)
