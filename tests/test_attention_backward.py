"""labkit.attention_backward: recompute and FlashAttention-2 backward, autograd wiring, against float64 autograd."""

import pytest
import torch
import torch.nn.functional as F

import labkit  # noqa: F401  (device switch first)
from labkit import attention, attention_backward
from labkit.check import assert_close
from attention_inputs import grads64, judge_grads, make_do, make_qkv

NS = (1, 17, 64, 100)
DS = (16, 32, 64, 128)
BLOCKS = {"block_q": 16, "block_k": 32}  # neither divides 17 or 100
DO_SEED = 1000  # upstream gradients dO are drawn from seeds DO_SEED + ...


def flash_grads(do, q, k, v, causal=False, scale=None, **blocks):
    o, lse = attention.flash_attention_forward(q, k, v, causal, scale, **blocks)
    return attention_backward.flash_attention_backward(do, q, k, v, o, lse, causal, scale, **blocks)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("D", DS)
def test_flash_backward(dtype, causal, n, D):
    q, k, v = make_qkv(1, 2, n, n, D, dtype, seed=5 * n + D)
    do = make_do(q, seed=DO_SEED + n)
    judge_grads(flash_grads(do, q, k, v, causal, **BLOCKS), do, q, k, v, causal)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("n_q, n_kv", [(1, 100), (17, 64), (100, 17), (64, 1)])
def test_flash_backward_cross_attention(dtype, n_q, n_kv):
    q, k, v = make_qkv(2, 2, n_q, n_kv, 32, dtype, seed=n_q + n_kv)
    do = make_do(q, seed=DO_SEED)
    judge_grads(flash_grads(do, q, k, v, block_q=16, block_k=16), do, q, k, v)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n", NS)
def test_flash_backward_float64_matches_sdpa_autograd(causal, n):
    q, k, v = (x.requires_grad_() for x in make_qkv(2, 2, n, n, 32, torch.float64, seed=n))
    do = make_do(q, seed=DO_SEED + n)
    expected = torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                                   (q, k, v), do)
    grads = flash_grads(do, q.detach(), k.detach(), v.detach(), causal, block_q=7, block_k=5)
    for name, g, e in zip(("dq", "dk", "dv"), grads, expected):
        assert_close(g, e, what=name)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("D", [16, 64])
def test_recompute_backward_float64(causal, n, D):
    q, k, v = make_qkv(2, 2, n, n, D, torch.float64, seed=n * D)
    do = make_do(q, seed=DO_SEED + D)
    grads = attention_backward.recompute_attention_backward(do, q, k, v, causal, block_q=16)
    for name, g, e in zip(("dq", "dk", "dv"), grads, grads64(do, q, k, v, causal)):
        assert_close(g, e, what=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("causal, n_q, n_kv", [(False, 17, 64), (False, 100, 1), (True, 100, 100)])
def test_recompute_backward_dtypes(dtype, causal, n_q, n_kv):
    q, k, v = make_qkv(1, 2, n_q, n_kv, 32, dtype, seed=n_q)
    do = make_do(q, seed=DO_SEED)
    judge_grads(attention_backward.recompute_attention_backward(do, q, k, v, causal, block_q=32), do, q, k, v, causal)


@pytest.mark.parametrize("causal", [False, True])
def test_flash_and_recompute_agree_for_every_block_size(causal):
    q, k, v = make_qkv(2, 2, 50, 50, 16, torch.float64, seed=11)
    do = make_do(q, seed=DO_SEED)
    expected = attention_backward.recompute_attention_backward(do, q, k, v, causal)
    for block_q, block_k in [(1, 7), (7, 1), (16, 16), (17, 33), (64, 32), (128, 128)]:
        grads = flash_grads(do, q, k, v, causal, block_q=block_q, block_k=block_k)
        for name, g, e in zip(("dq", "dk", "dv"), grads, expected):
            assert_close(g, e, what=f"{name} with blocks ({block_q}, {block_k})")
        again = attention_backward.recompute_attention_backward(do, q, k, v, causal, block_q=block_q)
        for name, g, e in zip(("dq", "dk", "dv"), again, expected):
            assert_close(g, e, what=f"recompute {name} with block_q={block_q}")


def test_scale_argument():
    q, k, v = (x.requires_grad_() for x in make_qkv(1, 2, 33, 33, 16, torch.float64, seed=5))
    do = make_do(q, seed=DO_SEED)
    expected = torch.autograd.grad(
        F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.7), (q, k, v), do)
    q, k, v = q.detach(), k.detach(), v.detach()
    for grads in (flash_grads(do, q, k, v, True, 0.7, block_q=8, block_k=8),
                  attention_backward.recompute_attention_backward(do, q, k, v, True, 0.7, block_q=8)):
        for name, g, e in zip(("dq", "dk", "dv"), grads, expected):
            assert_close(g, e, what=name)


# ------------------------------------------------------------------------- the lab's test

@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n", [512, 500])  # 500 is not a multiple of the tile
def test_the_labs_case(n, causal):
    """The lab's check: float64, (B, H, N, D) = (2, 4, 512, 32), tiles of 32, against autograd."""
    q, k, v = make_qkv(2, 4, n, n, 32, torch.float64, seed=n)
    do = make_do(q, seed=DO_SEED + n)
    expected = grads64(do, q, k, v, causal)
    tiles = {"block_q": 32, "block_k": 32}
    q_, k_, v_ = (x.clone().requires_grad_() for x in (q, k, v))
    attention_backward.flash_attention(q_, k_, v_, causal, None, **tiles).backward(do)
    for grads in (flash_grads(do, q, k, v, causal, **tiles), (q_.grad, k_.grad, v_.grad),
                  attention_backward.recompute_attention_backward(do, q, k, v, causal, block_q=32)):
        for name, g, e in zip(("dq", "dk", "dv"), grads, expected):
            assert_close(g, e, atol=1e-7, rtol=1e-5, what=name)  # the lab's tolerance
            assert_close(g, e, what=name)  # the course's float64 tolerance, much tighter


# ------------------------------------------------------------------- autograd wiring

@pytest.mark.parametrize("causal, n_q, n_kv, blocks", [
    (False, 9, 9, (4, 4)), (True, 9, 9, (4, 4)), (False, 5, 11, (2, 3)), (True, 13, 13, (64, 64)),
    (True, 10, 10, (3, 4))])
def test_gradcheck(causal, n_q, n_kv, blocks):
    q, k, v = (x.requires_grad_() for x in make_qkv(1, 2, n_q, n_kv, 4, torch.float64, seed=n_kv))
    assert torch.autograd.gradcheck(
        lambda q, k, v: attention_backward.flash_attention(q, k, v, causal, None, *blocks), (q, k, v))


def test_flash_attention_defaults_match_naive_and_keep_dtype():
    q, k, v = (x.requires_grad_() for x in make_qkv(2, 2, 70, 70, 16, torch.float32, seed=3))
    o = attention_backward.flash_attention(q, k, v, causal=True)
    assert_close(o, attention.naive_attention(q, k, v, causal=True))
    o.sum().backward()  # an expanded (stride-0) upstream gradient
    judge_grads((q.grad, k.grad, v.grad), torch.ones_like(o), q.detach(), k.detach(), v.detach(), True)
    h = [x.detach().half().requires_grad_() for x in (q, k, v)]
    attention_backward.flash_attention(*h).backward(make_do(h[0], seed=DO_SEED))
    assert all(x.grad.dtype == torch.float16 for x in h)


def test_gradient_for_some_inputs_only():
    q, k, v = make_qkv(1, 2, 20, 20, 16, torch.float64, seed=8)
    v.requires_grad_()
    do = make_do(q, seed=DO_SEED)
    attention_backward.flash_attention(q, k, v, causal=True).backward(do)
    assert q.grad is None and k.grad is None
    assert_close(v.grad, grads64(do, q, k, v, True)[2], what="dv")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_saves_only_q_k_v_o_lse(dtype):
    B, H, N, D = 1, 2, 100, 16
    q, k, v = (x.requires_grad_() for x in make_qkv(B, H, N, N, D, dtype, seed=2))
    saved = attention_backward.flash_attention(q, k, v, causal=True).grad_fn.saved_tensors
    assert [tuple(t.shape) for t in saved] == [(B, H, N, D)] * 4 + [(B, H, N)]
    assert saved[4].dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    # The same probe finds the N x N probabilities that plain attention's graph keeps.
    node, shapes = attention.naive_attention(q, k, v).grad_fn, set()
    while node is not None:
        shapes |= {tuple(getattr(node, a).shape) for a in dir(node) if a.startswith("_saved_")
                   and isinstance(getattr(node, a), torch.Tensor)}
        node = node.next_functions[0][0] if node.next_functions else None
    assert (B, H, N, N) in shapes


def test_non_contiguous_inputs():
    q, k, v = make_qkv(2, 3, 50, 50, 32, torch.float32, seed=4, bnhd=True)
    do = make_do(q, seed=DO_SEED).transpose(1, 2).contiguous().transpose(1, 2)
    assert not q.is_contiguous() and not do.is_contiguous()
    for causal in (False, True):
        judge_grads(flash_grads(do, q, k, v, causal, block_q=16, block_k=16), do, q, k, v, causal)
        judge_grads(attention_backward.recompute_attention_backward(do, q, k, v, causal, block_q=16), do, q, k,
              v, causal)


def test_inputs_are_not_modified():
    q, k, v = make_qkv(1, 2, 40, 40, 16, torch.float32, seed=9)
    do = make_do(q, seed=DO_SEED)
    o, lse = attention.flash_attention_forward(q, k, v, causal=True)
    copies = [x.clone() for x in (do, q, k, v, o, lse)]
    attention_backward.flash_attention_backward(do, q, k, v, o, lse, True, block_q=16, block_k=16)
    attention_backward.recompute_attention_backward(do, q, k, v, True, block_q=16)
    assert all(torch.equal(a, b) for a, b in zip((do, q, k, v, o, lse), copies))


def test_the_backward_lives_in_attention_backward_only():
    """One name, one place: labkit.attention no longer re-exports the backward (that was an import cycle)."""
    from labkit import attention_backward
    assert issubclass(attention_backward.FlashAttention, torch.autograd.Function)
    for name in ("flash_attention_backward", "recompute_attention_backward", "flash_attention", "FlashAttention"):
        assert not hasattr(attention, name)


# ------------------------------------------------------------------------ bad inputs

def bad_saved():
    q, k, v = make_qkv(1, 2, 8, 8, 16)
    do = make_do(q, seed=DO_SEED)
    o, lse = attention.flash_attention_forward(q, k, v)
    return [
        ("do wrong shape", (do[:, :, :5], q, k, v, o, lse), "do must have shape"),
        ("do not a tensor", (do.numpy(), q, k, v, o, lse), "do must be a torch.Tensor"),
        ("do other dtype", (do.double(), q, k, v, o, lse), "do must have dtype torch.float32 like q"),
        ("o wrong shape", (do, q, k, v, o[..., :8], lse), "o must have shape"),
        ("o on another device", (do, q, k, v, o.to("meta"), lse), "o must be on q's device"),
        ("lse wrong shape", (do, q, k, v, o, lse[..., None]), "lse must have shape"),
        ("lse integer", (do, q, k, v, o, lse.long()), "lse must be a floating-point"),
        ("o and lse swapped", (do, q, k, v, lse, o), "o must have shape"),
        ("q not 4-D", (do, q[0], k, v, o, lse), "4-D"),
        ("k and v differ", (do, q, k, v[:, :, :5], o, lse), "k and v"),
    ]


@pytest.mark.parametrize("label, args, words", bad_saved(), ids=[c[0] for c in bad_saved()])
def test_bad_inputs_raise_value_error(label, args, words):
    with pytest.raises(ValueError, match=words):
        attention_backward.flash_attention_backward(*args)


def test_recompute_bad_inputs():
    q, k, v = make_qkv(1, 2, 8, 8, 16)
    with pytest.raises(ValueError, match="do must have shape"):
        attention_backward.recompute_attention_backward(make_do(q, seed=DO_SEED)[:, :1], q, k, v)
    with pytest.raises(ValueError, match="block_q"):
        attention_backward.recompute_attention_backward(make_do(q, seed=DO_SEED), q, k, v, block_q=0)


@pytest.mark.parametrize("blocks", [(0, 64), (64, -1), (16.5, 16), (True, 16)])
def test_bad_block_sizes(blocks):
    q, k, v = make_qkv(1, 2, 8, 8, 16)
    o, lse = attention.flash_attention_forward(q, k, v)
    with pytest.raises(ValueError, match="block_"):
        attention_backward.flash_attention_backward(make_do(q, seed=DO_SEED), q, k, v, o, lse, block_q=blocks[0],
                                           block_k=blocks[1])
    with pytest.raises(ValueError, match="block_"):
        attention_backward.flash_attention(q, k, v, block_q=blocks[0], block_k=blocks[1])


def test_causal_needs_square():
    q, k, v = make_qkv(1, 2, 8, 12, 16)
    o, lse = attention.flash_attention_forward(q, k, v)
    for call in (lambda: attention_backward.flash_attention_backward(make_do(q, seed=DO_SEED), q, k, v, o, lse, True),
                 lambda: attention_backward.recompute_attention_backward(make_do(q, seed=DO_SEED), q, k, v, True),
                 lambda: attention_backward.flash_attention(q, k, v, True)):
        with pytest.raises(ValueError, match="N_q == N_kv"):
            call()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
@pytest.mark.parametrize("n_q, n_kv, causal, block_q, block_k",
                         [(16, 16, False, 4, 4), (13, 13, True, 4, 3), (5, 19, False, 4, 8),
                          (1, 1, False, 64, 64), (40, 40, True, 16, 8), (33, 7, False, 8, 16)])
def test_fast_backward_matches_the_readable_reference(n_q, n_kv, causal, block_q, block_k, dtype):
    from labkit import attention_backward
    g = torch.Generator().manual_seed(n_q * 100 + n_kv)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g, dtype=torch.float64).to(dtype) for n in (n_q, n_kv, n_kv))
    do = torch.randn(q.shape, generator=g, dtype=torch.float64).to(dtype)
    o, lse = attention.flash_attention_forward(q, k, v, causal, None, block_q, block_k)
    fast = attention_backward.flash_attention_backward(do, q, k, v, o, lse, causal, None, block_q, block_k)
    ref = attention_backward.flash_attention_backward_reference(do, q, k, v, o, lse, causal, None, block_q, block_k)
    for what, a, b in zip(("dq", "dk", "dv"), fast, ref):
        assert a.dtype == b.dtype == dtype
        assert_close(a, b, what=what)
    exact = attention_backward.recompute_attention_backward(*(x.double() for x in (do, q, k, v)), causal)
    for what, b, e in zip(("dq", "dk", "dv"), ref, exact):
        assert_close(b.double(), e, dtype=dtype, what=f"{what} against the lab's recompute backward")
