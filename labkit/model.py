"""The lab's attention layer and a tiny causal transformer, for any attention core.

An attention core is a callable ``attention(q, k, v, causal) -> o`` on (B, H, N, D) tensors:
``sdpa`` (torch's scaled_dot_product_attention), ``labkit.attention_backward.flash_attention`` or
``labkit.kernels.flash_attention_triton``. ``train`` fits a model to next-token prediction on
synthetic sequences generated here (no downloads) with AdamW and fixed seeds, so two runs
that differ only in the attention core see the same weights and batches. Introduced in
notebook 07. ``generate`` decodes greedily, with or without a ``KVCache`` of each layer's keys and
values (notebook 10); ``kv_cache_bytes_of`` is the memory that cache holds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, bool], torch.Tensor]


@dataclass
class KVCache:
    """Keys and values of the tokens fed so far: ``k[l]``, ``v[l]`` of layer l, each (B, H, length, D)."""

    k: list[torch.Tensor] = field(default_factory=list)
    v: list[torch.Tensor] = field(default_factory=list)
    length: int = 0


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """O = softmax(Q Kᵀ / sqrt(D), masked if causal) V by torch's scaled_dot_product_attention."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


class AttentionLayer(nn.Module):
    """The lab's layer: x (B, N, C) -> linear to q, k, v -> H heads -> attention core -> merge heads -> linear."""

    def __init__(self, dim: int, heads: int, attention: Attention = sdpa):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be a multiple of heads={heads}")
        self.heads, self.attention = heads, attention
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, causal: bool = False, cache: KVCache | None = None,
                layer: int = 0) -> torch.Tensor:
        """x (B, N, C) -> (B, N, C); with ``cache``, layer ``layer``'s keys and values are stored there.

        An empty cache (prefill): the core runs on the N tokens, its k and v are stored. Otherwise
        x is the one newest token (N = 1): its k, v are appended and its query attends to all
        cached keys by torch's SDPA without a mask (nothing is in its future), whatever the core.
        """
        if x.dim() != 3 or x.shape[-1] != self.out.in_features:
            raise ValueError(f"x must have shape (B, N, {self.out.in_features}), got {tuple(x.shape)}")
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads)  # (B, N, 3, H, D)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).contiguous().unbind(0)  # each (B, H, N, D)
        if cache is None:
            o = self.attention(q, k, v, causal)  # (B, H, N, D)
        elif layer == len(cache.k):  # prefill: keep copies, not views of the (3, B, H, N, D) buffer
            o = self.attention(q, k, v, causal)
            cache.k.append(k.clone())
            cache.v.append(v.clone())
        else:
            if N != 1:
                raise ValueError(f"a filled cache takes one new token at a time, got N={N}")
            k = cache.k[layer] = torch.cat([cache.k[layer], k], dim=2)  # (B, H, length + 1, D)
            v = cache.v[layer] = torch.cat([cache.v[layer], v], dim=2)
            o = F.scaled_dot_product_attention(q, k, v)  # (B, H, 1, D)
        return self.out(o.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(norm(x)), then x + MLP(norm(x))."""

    def __init__(self, dim: int, heads: int, attention: Attention):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = AttentionLayer(dim, heads, attention)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), causal=True, cache=cache, layer=layer)
        return x + self.mlp(self.norm2(x))


class TinyTransformer(nn.Module):
    """Causal language model: token + position embedding, pre-norm blocks, norm, linear head to logits.

    The weights depend only on ``seed``, not on the attention core.
    """

    def __init__(self, vocab: int, dim: int, heads: int, layers: int, max_len: int,
                 attention: Attention = sdpa, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.tok = nn.Embedding(vocab, dim)
            self.pos = nn.Embedding(max_len, dim)
            self.blocks = nn.ModuleList(Block(dim, heads, attention) for _ in range(layers))
            self.norm = nn.LayerNorm(dim)
            self.head = nn.Linear(dim, vocab)
        self.max_len = max_len

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits (B, N, vocab) for token ids idx (B, N); with ``cache``, idx follows its ``length`` tokens.

        With an empty cache idx is the prompt (prefill); with a filled one, the newest token (N = 1)
        at position ``cache.length``. The cache is extended by N.
        """
        start = 0 if cache is None else cache.length
        if idx.dim() != 2 or start + idx.shape[1] > self.max_len:
            raise ValueError(f"idx must have shape (B, N) with N <= {self.max_len - start}, got {tuple(idx.shape)}")
        x = self.tok(idx) + self.pos(torch.arange(start, start + idx.shape[1], device=idx.device))
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)
        if cache is not None:
            cache.length += idx.shape[1]
        return self.head(self.norm(x))


@torch.no_grad()
def generate(model: TinyTransformer, prompt: torch.Tensor, steps: int,
             cache: bool | KVCache = True) -> torch.Tensor:
    """Greedy decoding: prompt (B, P) -> (B, P + steps), each new token the argmax of the last logits.

    cache=False recomputes the whole prefix every step (the reference). cache=True (or an empty
    ``KVCache()``, which is filled in place for inspection) runs the prompt once through the
    model's core with causal=True, then feeds only the newest token, attending with plain SDPA
    to the cached keys and values. The last token is never fed, so the cache ends holding
    P + steps - 1 positions, each layer's K and V (B, H, P + steps - 1, D); steps = 0 runs nothing.
    """
    integer = not (prompt.is_floating_point() or prompt.is_complex() or prompt.dtype == torch.bool)
    if prompt.dim() != 2 or prompt.shape[1] < 1 or not integer:
        raise ValueError(f"prompt must be a 2-D integer tensor (B, P) with P >= 1, got {prompt.dtype} "
                         f"of shape {tuple(prompt.shape)}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if prompt.shape[1] + steps > model.max_len:
        raise ValueError(f"P + steps = {prompt.shape[1]} + {steps} exceeds the model's max_len = {model.max_len}")
    if isinstance(cache, KVCache) and (cache.length or cache.k or cache.v):
        raise ValueError("cache must be an empty KVCache()")
    store = cache if isinstance(cache, KVCache) else KVCache() if cache else None
    out = prompt.to(device=next(model.parameters()).device, dtype=torch.long, copy=True)  # (B, P)
    feed = out
    for _ in range(steps):
        logits = model(out) if store is None else model(feed, store)  # (B, N, vocab)
        feed = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
        out = torch.cat([out, feed], dim=1)
    return out


def kv_cache_bytes_of(cache: KVCache) -> int:
    """Bytes held by the cache's keys and values: 2 · layers · B · H · length · D · element size."""
    return sum(t.numel() * t.element_size() for t in cache.k + cache.v)


def repeat_sequences(n: int, length: int, vocab: int, period: int = 4, seed: int = 0) -> torch.Tensor:
    """n sequences (n, length) of token ids: a random pattern of ``period`` tokens, repeated.

    After the first period every token is predictable by looking back ``period`` positions, which
    only attention can do: a model that learns it drives the loss well below log(vocab).
    """
    g = torch.Generator().manual_seed(seed)
    pattern = torch.randint(0, vocab, (n, period), generator=g)
    return pattern.repeat(1, -(-length // period))[:, :length]


def train(model: nn.Module, data: torch.Tensor, steps: int, lr: float = 3e-3, seed: int = 0,
          batch_size: int = 8) -> list[float]:
    """AdamW on next-token cross-entropy over batches of ``data`` rows (n, N + 1); the loss (nats) per step.

    The batches depend only on ``seed``, so runs that differ in the attention core see the same ones.
    """
    if data.dim() != 2 or data.shape[1] < 2:
        raise ValueError(f"data must have shape (n, N + 1) with N >= 1, got {tuple(data.shape)}")
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(steps):
        batch = data[torch.randint(0, data.shape[0], (batch_size,), generator=g)].to(device)
        logits = model(batch[:, :-1])  # (B, N, vocab)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
