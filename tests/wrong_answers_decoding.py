import labkit  # noqa: F401  (first: picks the GPU or Triton's interpreter)
from wrong_answer import WrongAnswer

# Wrong student answers to notebook 10's exercises (attention at inference), written without the checkers.
#
# WRONG[i] is a plausible wrong answer and WITNESS[i]() returns (args, kwargs): a valid input on which it differs
# from labkit's reference (labkit.decoding.kv_cache_bytes, combine_partials, paged_attention and
# labkit.kernels.decoding.flash_decode_triton). The Triton answers are the notebook's whole exercise cell (kernel
# and wrapper) with one mistake edited into the kernel's loop body, compiled as a notebook compiles a cell.

import itertools
import linecache
import math

import torch

from labkit import decoding, device
from labkit.decoding import check_decode_inputs
from labkit.kernels import launch

WRONG: list[WrongAnswer] = []
WITNESS: list = []


def _add(exercise, mistake, names, witness):
    def register(fn):
        WRONG.append(WrongAnswer(exercise, mistake, tuple(names), fn))
        WITNESS.append(witness)
        return fn
    return register


# ---------------------------------------------------------------------------------------------- 10.1 kv_cache_bytes

def _kv(**overrides):
    kwargs = dict(layers=32, kv_heads=8, head_dim=128, tokens=4096)
    kwargs.update(overrides)
    return lambda: ((), kwargs)


@_add("kv_cache_bytes", "counts only the keys: forgot the factor 2 for K and V",
      [r"K and V", r"factor (of )?(2|two)", r"twice|double|both"], _kv())
def kv_only_keys(layers, kv_heads, head_dim, tokens, dtype=torch.float16, batch=1):
    element = torch.empty((), dtype=dtype).element_size()
    return layers * kv_heads * head_dim * tokens * batch * element


@_add("kv_cache_bytes", "counts bits, not bytes (element size times 8)",
      [r"\bbits?\b", r"\b8\b|eight"], _kv())
def kv_bits(layers, kv_heads, head_dim, tokens, dtype=torch.float16, batch=1):
    bits = torch.finfo(dtype).bits if dtype.is_floating_point else torch.iinfo(dtype).bits
    return 2 * layers * kv_heads * head_dim * tokens * batch * bits


@_add("kv_cache_bytes", "ignores the dtype: always 2 bytes per element (fp16)",
      [r"dtype", r"element[ _]?size|bytes per element|itemsize"], _kv(dtype=torch.float32))
def kv_ignores_dtype(layers, kv_heads, head_dim, tokens, dtype=torch.float16, batch=1):
    return 2 * layers * kv_heads * head_dim * tokens * batch * 2


@_add("kv_cache_bytes", "ignores the batch: the bytes of one sequence",
      [r"batch", r"sequences"], _kv(batch=4))
def kv_ignores_batch(layers, kv_heads, head_dim, tokens, dtype=torch.float16, batch=1):
    element = torch.empty((), dtype=dtype).element_size()
    return 2 * layers * kv_heads * head_dim * tokens * element


@_add("kv_cache_bytes", "returns a float: bytes per element as bits / 8",
      [r"\bint\b|integer", r"float"], _kv())
def kv_float(layers, kv_heads, head_dim, tokens, dtype=torch.float16, batch=1):
    element = torch.finfo(dtype).bits / 8
    return 2 * layers * kv_heads * head_dim * tokens * batch * element


@_add("kv_cache_bytes", "the bytes per token (the formula of the text), not times the number of tokens",
      [r"tokens?", r"per[- ]token"], _kv(tokens=4096))
def kv_per_token(layers, kv_heads, head_dim, tokens, dtype=torch.float16, batch=1):
    element = torch.empty((), dtype=dtype).element_size()
    return 2 * layers * kv_heads * head_dim * batch * element


@_add("kv_cache_bytes", "counts elements, not bytes: never multiplies by the element size",
      [r"element[ _]?size|bytes per element|itemsize", r"elements?"], _kv(dtype=torch.float32))
def kv_elements(layers, kv_heads, head_dim, tokens, dtype=torch.float16, batch=1):
    return 2 * layers * kv_heads * head_dim * tokens * batch


@_add("kv_cache_bytes", "returns GiB instead of bytes",
      [r"GiB|MiB|gigabytes?|megabytes?|\bGB\b", r"1024|2\s*\*\*\s*30|2\^30", r"units?"],
      _kv(tokens=32768, batch=4))
def kv_gib(layers, kv_heads, head_dim, tokens, dtype=torch.float16, batch=1):
    element = torch.empty((), dtype=dtype).element_size()
    return 2 * layers * kv_heads * head_dim * tokens * batch * element // 2**30


# -------------------------------------------------------------------------------------------- 10.2 combine_partials

def _partials(B=2, H=4, H_kv=2, N=64, D=16, lengths=(64, 64), scale=None, num_splits=4, dtype=torch.float32,
              seed=0, spread=0.0):
    """Flash-decoding's chunk states from labkit.decoding.split_partials, as positional args of combine_partials.

    ``spread`` > 0 adds a different offset to each chunk's keys along q, so the chunks' maxima differ a lot."""
    def witness():
        g = torch.Generator().manual_seed(seed)
        q = torch.randn(B, H, D, generator=g, dtype=dtype)
        k = torch.randn(B, H_kv, N, D, generator=g, dtype=dtype)
        v = torch.randn(B, H_kv, N, D, generator=g, dtype=dtype)
        if spread:
            chunk = -(-N // num_splits)
            offsets = torch.arange(N, dtype=dtype) // chunk * spread  # (N,)
            k = k + offsets[None, None, :, None] / math.sqrt(D)
            q = q.abs() + 0.5
        p = decoding.split_partials(q, k, v, torch.tensor(lengths), scale, num_splits)
        return (p.m, p.l, p.acc), {}
    return witness


@_add("combine_partials", "does not rescale the chunk states by exp(m_s - M): sums acc and l as they are",
      [r"rescal", r"e\^?\s*\(?\s*m_s|exp\s*\(\s*m", r"weigh"], _partials(spread=1.0))
def combine_no_rescale(m, l, acc):  # noqa: E741
    M = m.amax(dim=-1)
    total = l.sum(dim=-1)
    return acc.sum(dim=-2) / total[..., None], M + torch.log(total)


@_add("combine_partials", "averages the chunks' normalised outputs acc_s / l_s instead of weighing them",
      [r"averag|mean", r"weigh"], _partials(spread=1.0))
def combine_average(m, l, acc):  # noqa: E741
    M = m.amax(dim=-1, keepdim=True)
    M = torch.where(torch.isinf(M), torch.zeros_like(M), M)
    w = torch.exp(m - M)
    total = (w * l).sum(dim=-1)
    full = l > 0
    outs = torch.where(full[..., None], acc / l.clamp_min(1e-30)[..., None], torch.zeros_like(acc))
    o = outs.sum(dim=-2) / full.sum(dim=-1, keepdim=True).to(acc.dtype)
    return o, M[..., 0] + torch.log(total)


@_add("combine_partials", "forgets to add M back to the log-sum-exp: lse = log Σ e^(m_s - M) l_s",
      [r"\bM\b", r"max(imum)?"], _partials())
def combine_lse_without_max(m, l, acc):  # noqa: E741
    M = m.amax(dim=-1, keepdim=True)
    M = torch.where(torch.isinf(M), torch.zeros_like(M), M)
    w = torch.exp(m - M)
    total = (w * l).sum(dim=-1)
    return (w[..., None] * acc).sum(dim=-2) / total[..., None], torch.log(total)


@_add("combine_partials", "normalises each chunk first (acc_s / l_s): an empty chunk gives 0/0 = NaN",
      [r"empty", r"NaN", r"0\s*/\s*0|zero by zero"], _partials(lengths=(64, 23)))
def combine_nan_empty_chunk(m, l, acc):  # noqa: E741
    lse_s = m + torch.log(l)  # each chunk's own log-sum-exp
    lse = torch.logsumexp(lse_s, dim=-1)
    o_s = acc / l[..., None]  # each chunk's normalised output
    return (torch.exp(lse_s - lse[..., None])[..., None] * o_s).sum(dim=-2), lse


@_add("combine_partials", "sums acc over its last axis (the head dim D) instead of the chunk axis S",
      [r"axis|\bdim\b", r"chunk axis|over (the )?chunks|\bS\b"], _partials())
def combine_wrong_axis(m, l, acc):  # noqa: E741
    M = m.amax(dim=-1, keepdim=True)
    M = torch.where(torch.isinf(M), torch.zeros_like(M), M)
    w = torch.exp(m - M)
    total = (w * l).sum(dim=-1)
    return (w[..., None] * acc).sum(dim=-1) / total[..., None], M[..., 0] + torch.log(total)


@_add("combine_partials", "weighs the chunks by exp(m_s) without subtracting the max: overflows",
      [r"overflow", r"exponents?", r"subtract(ing)? (the )?(max|M)"], _partials(scale=30.0))
def combine_overflow(m, l, acc):  # noqa: E741
    w = torch.exp(m)
    total = (w * l).sum(dim=-1)
    return (w[..., None] * acc).sum(dim=-2) / total[..., None], torch.log(total)


@_add("combine_partials", "rescales acc by exp(m_s - M) but sums the l_s unrescaled in the denominator",
      [r"denominator", r"\bl_s\b|\bl\b|\bℓ", r"normali[sz]"], _partials(spread=1.0))
def combine_l_not_rescaled(m, l, acc):  # noqa: E741
    M = m.amax(dim=-1, keepdim=True)
    M = torch.where(torch.isinf(M), torch.zeros_like(M), M)
    w = torch.exp(m - M)
    total = l.sum(dim=-1)
    return (w[..., None] * acc).sum(dim=-2) / total[..., None], M[..., 0] + torch.log((w * l).sum(dim=-1))


@_add("combine_partials", "takes the log in base 2 for lse, as the kernel does, instead of the natural log",
      [r"log2|base[- ]?2", r"natural"], _partials())
def combine_log2(m, l, acc):  # noqa: E741
    M = m.amax(dim=-1, keepdim=True)
    M = torch.where(torch.isinf(M), torch.zeros_like(M), M)
    w = torch.exp(m - M)
    total = (w * l).sum(dim=-1)
    return (w[..., None] * acc).sum(dim=-2) / total[..., None], M[..., 0] + torch.log2(total)


@_add("combine_partials", "the exponent's sign flipped: weighs the chunks by exp(M - m_s)",
      [r"sign", r"M\s*-\s*m_s|m_s\s*-\s*M", r"exponents?"], _partials(spread=1.0))
def combine_sign(m, l, acc):  # noqa: E741
    M = m.amax(dim=-1, keepdim=True)
    w = torch.exp(M - m)
    total = (w * l).sum(dim=-1)
    return (w[..., None] * acc).sum(dim=-2) / total[..., None], M[..., 0] + torch.log(total)


@_add("combine_partials", "casts the states to float32 first: float64 states give float32 results",
      [r"dtype", r"float64|double", r"float32"], _partials(dtype=torch.float64))
def combine_float32(m, l, acc):  # noqa: E741
    m, l, acc = m.float(), l.float(), acc.float()  # noqa: E741
    M = m.amax(dim=-1, keepdim=True)
    M = torch.where(torch.isinf(M), torch.zeros_like(M), M)
    w = torch.exp(m - M)
    total = (w * l).sum(dim=-1)
    return (w[..., None] * acc).sum(dim=-2) / total[..., None], M[..., 0] + torch.log(total)


# --------------------------------------------------------------------------------------------- 10.3 paged_attention

def _paged(B=2, H=4, H_kv=2, D=16, P=4, lengths=(7, 13), num_pages=16, max_pages=4, scale=None, seed=0,
           stale=True):
    """A cache built by labkit.decoding.PagedKVCache, the sequences appended in turns (so their pages interleave,
    from a shuffled free list); with ``stale`` every slot that holds no live position has old data in it."""
    def witness():
        g = torch.Generator().manual_seed(seed)
        cache = decoding.PagedKVCache(B, H_kv, D, P, num_pages, max_pages, seed=seed)
        for step in range(max(lengths)):
            for b in range(B):
                if step < lengths[b]:
                    cache.append(b, torch.randn(H_kv, D, generator=g), torch.randn(H_kv, D, generator=g))
        if stale:
            live = torch.zeros(num_pages, P, dtype=torch.bool)
            for b in range(B):
                for i in range(lengths[b]):
                    live[int(cache.block_table[b, i // P]), i % P] = True
            dead = ~live[:, None, :, None].expand_as(cache.k_pages)
            cache.k_pages[dead] = 3 * torch.randn(int(dead.sum()), generator=g)
            cache.v_pages[dead] = 3 * torch.randn(int(dead.sum()), generator=g)
        q = torch.randn(B, H, D, generator=g)
        kwargs = {} if scale is None else {"scale": scale}
        return (q, cache.k_pages, cache.v_pages, cache.block_table, cache.lengths), kwargs
    return witness


def _gather(k_pages, v_pages, pages, slots):
    """(B, H_kv, n, D) keys and values: position i of sequence b at page pages[b, i], slot slots[b, i]."""
    k = k_pages[pages, :, slots].permute(0, 2, 1, 3)
    v = v_pages[pages, :, slots].permute(0, 2, 1, 3)
    return k, v


@_add("paged_attention", "page and slot swapped: page block_table[b, i % P], slot i // P",
      [r"swap", r"i\s*%\s*P|i\s*//\s*P", r"slot"], _paged(lengths=(7, 13)))
def paged_swapped(q, k_pages, v_pages, block_table, lengths, scale=None):
    P = k_pages.shape[2]
    n = int(lengths.max())
    pos = torch.arange(n)
    pages = block_table[:, pos % P].long().clamp(min=0)
    slots = (pos // P).expand_as(pages)
    k, v = _gather(k_pages, v_pages, pages, slots)
    return decoding.decode_attention(q, k, v, lengths, scale)


@_add("paged_attention", "ignores the block table: assumes sequence b's pages are b·max_pages, b·max_pages + 1, ...",
      [r"block[ _]?table", r"in order|consecutive|contiguous|sequential"], _paged(num_pages=16, max_pages=4))
def paged_no_table(q, k_pages, v_pages, block_table, lengths, scale=None):
    P = k_pages.shape[2]
    B, max_pages = block_table.shape
    n = int(lengths.max())
    pos = torch.arange(n)
    pages = (torch.arange(B)[:, None] * max_pages + pos // P).clamp(max=k_pages.shape[0] - 1)
    slots = (pos % P).expand_as(pages)
    k, v = _gather(k_pages, v_pages, pages, slots)
    return decoding.decode_attention(q, k, v, lengths, scale)


@_add("paged_attention", "ignores the lengths: every sequence read as long as the longest one",
      [r"lengths?\b", r"past (the|its) (end|length)|beyond", r"stale|old data|padding"], _paged(lengths=(5, 14)))
def paged_ignores_lengths(q, k_pages, v_pages, block_table, lengths, scale=None):
    P = k_pages.shape[2]
    n = int(lengths.max())
    pos = torch.arange(n)
    pages = block_table[:, pos // P].long().clamp(min=0)
    slots = (pos % P).expand_as(pages)
    k, v = _gather(k_pages, v_pages, pages, slots)
    return decoding.decode_attention(q, k, v, None, scale)


@_add("paged_attention", "reads whole pages: the part-filled last page's old slots are counted too",
      [r"last page|part[- ]?(filled|full)|partial page|whole pages?|full pages?", r"lengths?\b",
       r"stale|old data"], _paged(lengths=(6, 13)))
def paged_whole_pages(q, k_pages, v_pages, block_table, lengths, scale=None):
    P = k_pages.shape[2]
    rounded = (lengths + P - 1) // P * P
    n = int(rounded.max())
    pos = torch.arange(n)
    pages = block_table[:, pos // P].long().clamp(min=0)
    slots = (pos % P).expand_as(pages)
    k, v = _gather(k_pages, v_pages, pages, slots)
    return decoding.decode_attention(q, k, v, rounded, scale)


@_add("paged_attention", "off by one: counts positions i <= lengths[b], one past the end",
      [r"off[- ]by[- ]one", r"<=|≤|one (position|token|slot) too many|one extra|one past"], _paged(lengths=(7, 13)))
def paged_off_by_one(q, k_pages, v_pages, block_table, lengths, scale=None):
    P = k_pages.shape[2]
    n = int(lengths.max()) + 1
    pos = torch.arange(n)
    pages = block_table[:, pos // P].long().clamp(min=0)
    slots = (pos % P).expand_as(pages)
    k, v = _gather(k_pages, v_pages, pages, slots)
    return decoding.decode_attention(q, k, v, lengths + 1, scale)


@_add("paged_attention", "wrong GQA head mapping: copies the KV heads with repeat, so head h reads KV head h % H_kv",
      [r"h\s*//\s*G|//\s*\(?H\s*/\s*H_kv|h\s*//", r"grouped|GQA", r"KV head"], _paged(H=4, H_kv=2))
def paged_gqa_modulo(q, k_pages, v_pages, block_table, lengths, scale=None):
    P = k_pages.shape[2]
    G = q.shape[1] // k_pages.shape[1]
    n = int(lengths.max())
    pos = torch.arange(n)
    pages = block_table[:, pos // P].long().clamp(min=0)
    slots = (pos % P).expand_as(pages)
    k, v = _gather(k_pages, v_pages, pages, slots)
    return decoding.decode_attention(q, k.repeat(1, G, 1, 1), v.repeat(1, G, 1, 1), lengths, scale)


@_add("paged_attention", "default scale 1/D instead of 1/sqrt(D)",
      [r"sqrt|√|square root", r"\bscale\b|scaling"], _paged())
def paged_scale_one_over_d(q, k_pages, v_pages, block_table, lengths, scale=None):
    P = k_pages.shape[2]
    n = int(lengths.max())
    pos = torch.arange(n)
    pages = block_table[:, pos // P].long().clamp(min=0)
    slots = (pos % P).expand_as(pages)
    k, v = _gather(k_pages, v_pages, pages, slots)
    return decoding.decode_attention(q, k, v, lengths, 1 / q.shape[-1] if scale is None else scale)


@_add("paged_attention", "uses sequence 0's row of the block table for every sequence",
      [r"block[ _]?table\[b|row b|its own (row|pages|block table)|each sequence'?s?", r"sequence 0|first sequence"],
      _paged(lengths=(7, 13)))
def paged_first_row(q, k_pages, v_pages, block_table, lengths, scale=None):
    P = k_pages.shape[2]
    B = q.shape[0]
    n = int(lengths.max())
    pos = torch.arange(n)
    pages = block_table[0, pos // P].long().clamp(min=0).expand(B, n)
    slots = (pos % P).expand_as(pages)
    k, v = _gather(k_pages, v_pages, pages, slots)
    return decoding.decode_attention(q, k, v, lengths, scale)


@_add("paged_attention", "reshapes the gathered (B, n, H_kv, D) keys to (B, H_kv, n, D) without permuting",
      [r"permute|transpose", r"reshape|view", r"axes|axis order|dimensions? order"], _paged(H_kv=2))
def paged_no_permute(q, k_pages, v_pages, block_table, lengths, scale=None):
    P, H_kv, D = k_pages.shape[2], k_pages.shape[1], k_pages.shape[3]
    B = q.shape[0]
    n = int(lengths.max())
    pos = torch.arange(n)
    pages = block_table[:, pos // P].long().clamp(min=0)
    slots = (pos % P).expand_as(pages)
    k = k_pages[pages, :, slots].reshape(B, H_kv, n, D)
    v = v_pages[pages, :, slots].reshape(B, H_kv, n, D)
    return decoding.decode_attention(q, k, v, lengths, scale)


# ------------------------------------------------------------------------------------ 10.4 flash_decode_triton

# The notebook's exercise cell (without its %%needs_triton line); @BODY@ is the student's loop body.
CELL = '''import triton
import triton.language as tl
from labkit.kernels.decoding import decode_combine_kernel
from labkit.kernels.flash_forward import LOG2E


@triton.jit
def decode_kernel(Q, K, V, LENGTHS, M, L, ACC,
                  stride_qb, stride_qh, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
                  stride_vb, stride_vh, stride_vn, stride_vd,
                  H, group, chunk, num_splits, qk_scale, HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr):
    """Program (b·H + h, chunk): the chunk's partial state (m, l, acc), m in log2 units."""
    off_bh = tl.program_id(0)
    split = tl.program_id(1)
    b, h = off_bh // H, off_bh % H
    kv_h = h // group  # grouped-query attention
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + b * stride_qb + h * stride_qh + offs_d * stride_qd).to(tl.float32)  # (D,)
    k_base = K + b.to(tl.int64) * stride_kb + kv_h * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + kv_h * stride_vh
    start = split * chunk
    end = tl.minimum(start + chunk, tl.load(LENGTHS + b))  # past the length: no tile runs
    m_i = tl.full([], float("-inf"), tl.float32)
    l_i = tl.full([], 0.0, tl.float32)
    acc = tl.zeros([HEAD_DIM], dtype=tl.float32)
    for start_n in range(start, end, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        valid = offs_n < end
@BODY@
    state = off_bh * num_splits + split
    tl.store(M + state, m_i)
    tl.store(L + state, l_i)
    tl.store(ACC + state * HEAD_DIM + offs_d, acc)


def flash_decode_triton(q, k, v, lengths=None, scale=None, num_splits=None):
    """(o, lse) for q (B, H, D) against k, v (B, H_kv, N, D): decode_kernel's chunk states, merged by labkit's combine."""
    B, H, H_kv, N, D, lengths = check_decode_inputs(q, k, v, lengths, "flash_decode_triton")
    scale = 1 / math.sqrt(D) if scale is None else scale
    block = launch.decode_config(launch.current_arch(), q.dtype, D).block_n
    tiles = triton.cdiv(N, block)
    splits = min(num_splits or launch.decode_splits(launch.current_arch(), B * H, tiles), tiles)
    chunk = triton.cdiv(tiles, splits) * block  # a whole number of tiles per chunk
    splits = triton.cdiv(N, chunk)
    m = torch.empty(B * H * splits, dtype=torch.float32, device=q.device)
    l = torch.empty_like(m)
    acc = torch.empty(B * H * splits, D, dtype=torch.float32, device=q.device)
    o = torch.empty(B, H, D, dtype=q.dtype, device=q.device)
    lse = torch.empty(B, H, dtype=torch.float32, device=q.device)
    decode_kernel[(B * H, splits)](q, k, v, lengths.to(torch.int32), m, l, acc, *q.stride(), *k.stride(), *v.stride(),
                                   H, H // H_kv, chunk, splits, scale * LOG2E, HEAD_DIM=D, BLOCK_N=block)
    decode_combine_kernel[(B * H,)](m, l, acc, o, lse, splits, *o.stride(), H, HEAD_DIM=D,
                                    BLOCK_S=max(16, triton.next_power_of_2(splits)))
    return o, lse
'''

# The solution's loop body, line by line (8 spaces in); each wrong answer edits one thing in it.
LOAD_K = ("        k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kd, "
          "mask=valid[:, None], other=0.0)")
SCORES = "        s = tl.sum(k.to(tl.float32) * q[None, :], 1) * qk_scale  # (BLOCK_N,), log2 units"
MASK = '        s = tl.where(valid, s, float("-inf"))'
M_NEW = "        m_new = tl.maximum(m_i, tl.max(s, 0))"
ALPHA = "        alpha = tl.exp2(m_i - m_new)  # 0 on the first tile"
P_ = "        p = tl.exp2(s - m_new)"
L_I = "        l_i = l_i * alpha + tl.sum(p, 0)"
LOAD_V = ("        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd, "
          "mask=valid[:, None], other=0.0)")
ACC = "        acc = acc * alpha + tl.sum(p[:, None] * v.to(tl.float32), 0)"
M_I = "        m_i = m_new"
SOLUTION = [LOAD_K, SCORES, MASK, M_NEW, ALPHA, P_, L_I, LOAD_V, ACC, M_I]

_cells = itertools.count()


def _notebook_cell(body_lines):
    """The exercise cell with ``body_lines`` as the loop body, run as a notebook runs a cell: its source kept in
    linecache under a cell name (Triton reads a kernel's source), in a namespace of the notebook's imports."""
    src = CELL.replace("@BODY@", "\n".join(body_lines))
    name = f"<wrong_answers_decoding cell {next(_cells)}>"
    linecache.cache[name] = (len(src), None, src.splitlines(keepends=True), name)
    namespace = {"__name__": "__main__", "torch": torch, "math": math, "launch": launch,
                 "check_decode_inputs": check_decode_inputs, "decoding": decoding}
    exec(compile(src, name, "exec"), namespace)  # noqa: S102 - the course's own cell text
    return namespace["flash_decode_triton"]


def _edit(**changes):
    """The solution's body with some lines replaced (a string: that line; None: deleted; a list: several)."""
    names = ["LOAD_K", "SCORES", "MASK", "M_NEW", "ALPHA", "P_", "L_I", "LOAD_V", "ACC", "M_I"]
    body = []
    for key, line in zip(names, SOLUTION):
        new = changes.pop(key, line)
        if new is None:
            continue
        body.extend([new] if isinstance(new, str) else new)
    assert not changes, changes
    return body


def _block():
    """The kernel's tile width BLOCK_N: 16 in Triton's interpreter, 64 on a GPU (for D = 16)."""
    return launch.decode_config(launch.current_arch(), torch.float32, 16).block_n


def _decode(B=2, H=4, H_kv=2, D=16, lengths=(37, 64), num_splits=None, seed=0, scale=None):
    """q, k, v of N = 4 tiles (64 positions in the interpreter), lengths given per 64 positions and scaled with N.

    D None: D = BLOCK_N (16 in the interpreter), for an answer whose tile axis and head dim must agree."""
    def witness():
        block = _block()
        N = 4 * block
        d = (launch.decode_config(launch.current_arch(), torch.float32, 64).block_n if D is None else D)
        g = torch.Generator().manual_seed(seed)
        q = torch.randn(B, H, d, generator=g).to(device.DEVICE)
        k = torch.randn(B, H_kv, N, d, generator=g).to(device.DEVICE)
        v = torch.randn(B, H_kv, N, d, generator=g).to(device.DEVICE)
        kwargs = {"lengths": torch.tensor([n * N // 64 for n in lengths], device=device.DEVICE)}
        if num_splits is not None:
            kwargs["num_splits"] = num_splits
        if scale is not None:
            kwargs["scale"] = scale
        return (q, k, v), kwargs
    return witness


def _falling_scores(D=16, c=20.0):
    """One head whose first tile scores +c·D/√D and the rest -c·D/√D: the running max falls far (4 tiles)."""
    def witness():
        block = _block()
        N = 4 * block
        g = torch.Generator().manual_seed(1)
        q = torch.ones(1, 1, D)
        k = torch.full((1, 1, N, D), -c)
        k[:, :, :block] = c
        v = torch.randn(1, 1, N, D, generator=g)
        return (q.to(device.DEVICE), k.to(device.DEVICE), v.to(device.DEVICE)), {"num_splits": 1}
    return witness


_TRITON = [
    ("no valid mask on the scores: the masked-out positions score 0 instead of -inf",
     [r"mask", r"\bvalid\b", r"-inf|-∞|minus infinity"], _edit(MASK=None), _decode(lengths=(37, 50))),
    ("the key and value offsets leave out start_n: every tile reads positions 0 .. BLOCK_N - 1",
     [r"start_n", r"offs_n", r"offsets?"],
     _edit(LOAD_K="        k = tl.load(k_base + tl.arange(0, BLOCK_N)[:, None] * stride_kn + offs_d[None, :] * stride_kd, "
                  "mask=valid[:, None], other=0.0)",
           LOAD_V="        v = tl.load(v_base + tl.arange(0, BLOCK_N)[:, None] * stride_vn + offs_d[None, :] * stride_vd, "
                  "mask=valid[:, None], other=0.0)"),
     _decode()),
    ("alpha not applied to acc: the accumulator is never rescaled when the max grows",
     [r"\bacc\b", r"accumulator"],
     _edit(ACC="        acc = acc + tl.sum(p[:, None] * v.to(tl.float32), 0)"), _decode(num_splits=1)),
    ("alpha not applied to l_i: the running sum is never rescaled when the max grows",
     [r"\bl_i\b", r"running sum", r"denominator"],
     _edit(L_I="        l_i = l_i + tl.sum(p, 0)"), _decode(num_splits=1)),
    ("exp instead of exp2 on scores in log2 units",
     [r"exp2", r"log2|base[- ]?2", r"LOG2E|log2\s*\(?e\)?"],
     _edit(ALPHA="        alpha = tl.exp(m_i - m_new)", P_="        p = tl.exp(s - m_new)"), _decode()),
    ("m_i never updated: the running max stays -inf",
     [r"\bm_i\b", r"running max", r"m_new"], _edit(M_I=None), _decode()),
    ("the dot products summed over the wrong axis (axis 0, the tile, instead of axis 1, the head dim)",
     [r"axis", r"dot products?", r"head dim"],
     _edit(SCORES="        s = tl.sum(k.to(tl.float32) * q[None, :], 0) * qk_scale"), _decode(D=None)),
    ("the scores not multiplied by qk_scale",
     [r"qk_scale", r"\bscal(e|ed|ing)\b", r"sqrt|√|LOG2E"],
     _edit(SCORES="        s = tl.sum(k.to(tl.float32) * q[None, :], 1)"), _decode()),
    ("p computed against the old max m_i instead of m_new",
     [r"m_new", r"new max", r"old max|previous max|stale max"],
     _edit(P_="        p = tl.exp2(s - m_i)"), _decode()),
    ("m_i updated before alpha is computed: alpha is always 1, nothing is rescaled",
     [r"\balpha\b", r"order", r"too early|before (computing|updating)"],
     _edit(M_NEW=["        m_new = tl.maximum(m_i, tl.max(s, 0))", "        m_i = m_new"], M_I=None),
     _decode(num_splits=1)),
    ("the tile's max alone, not the running max: alpha = exp2(m_i - m_new) overflows when the max falls",
     [r"running max", r"overflow", r"\bm_i\b"],
     _edit(M_NEW="        m_new = tl.max(s, 0)"), _falling_scores()),
]

if device.HAS_TRITON:
    for _mistake, _names, _body, _witness in _TRITON:
        WRONG.append(WrongAnswer("flash_decode_triton", _mistake, tuple(_names), _notebook_cell(_body)))
        WITNESS.append(_witness)

assert len(WRONG) == len(WITNESS)
