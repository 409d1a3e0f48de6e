"""The lab's attention layer and a tiny causal transformer, for any attention core.

An attention core is a callable ``attention(q, k, v, causal) -> o`` on (B, H, N, D) tensors:
``sdpa`` (torch's scaled_dot_product_attention), ``labkit.attention_backward.flash_attention`` or
``labkit.kernels.flash_attention_triton``. ``train`` fits a model to next-token prediction on
synthetic sequences generated here (no downloads) with AdamW and fixed seeds, so two runs
that differ only in the attention core see the same weights and batches. Introduced in
notebook 07.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, bool], torch.Tensor]


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

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.out.in_features:
            raise ValueError(f"x must have shape (B, N, {self.out.in_features}), got {tuple(x.shape)}")
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads)  # (B, N, 3, H, D)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).contiguous().unbind(0)  # each (B, H, N, D)
        o = self.attention(q, k, v, causal)  # (B, H, N, D)
        return self.out(o.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(norm(x)), then x + MLP(norm(x))."""

    def __init__(self, dim: int, heads: int, attention: Attention):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = AttentionLayer(dim, heads, attention)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), causal=True)
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

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, N, vocab) for token ids idx (B, N)."""
        if idx.dim() != 2 or idx.shape[1] > self.max_len:
            raise ValueError(f"idx must have shape (B, N) with N <= {self.max_len}, got {tuple(idx.shape)}")
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


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
