"""labkit.kernels.flash_attention_backward_triton and flash_attention_triton (Triton; the interpreter on CPU) against float64 autograd."""

import pytest
import torch

import labkit  # noqa: F401  (device switch first)
from labkit import attention, device
from labkit.check import assert_close
from labkit.kernels import flash_attention_triton, flash_attention_backward_triton, flash_attention_forward_triton
from labkit.kernels.flash_forward import DTYPES, HEAD_DIMS
from attention_inputs import grads64, judge_grads, make_do, make_qkv, ref64

NS = (1, 17, 100)
DS = (16, 32, 64, 128)
# bf16 in the full matrix on a GPU only (the interpreter does its dots in fp32: slow there).
MATRIX_DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if device.HAS_CUDA else [])


def saved(q, k, v, causal=False, scale=None):
    """o (input dtype) and lse (float32) as the forward saves them, from the float64 oracle."""
    o, lse = ref64(q, k, v, causal, scale)
    return o.to(q.dtype), lse.float()


@pytest.mark.parametrize("dtype", MATRIX_DTYPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("D", DS)
def test_backward(dtype, causal, n, D):
    q, k, v = make_qkv(1, 1, n, n, D, dtype, seed=n * D)
    do = make_do(q)
    judge_grads(flash_attention_backward_triton(do, q, k, v, *saved(q, k, v, causal), causal=causal),
                do, q, k, v, causal)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("n_q, n_kv", [(1, 100), (17, 64), (100, 17), (64, 1)])
def test_backward_cross_attention(dtype, n_q, n_kv):
    q, k, v = make_qkv(2, 1, n_q, n_kv, 32, dtype, seed=n_q + n_kv)
    do = make_do(q)
    judge_grads(flash_attention_backward_triton(do, q, k, v, *saved(q, k, v)), do, q, k, v)


@pytest.mark.parametrize("causal", [False, True])
def test_backward_bfloat16(causal):
    # The interpreter does bf16 dots in fp32 (bf16 values are exact there); a GPU does them natively.
    q, k, v = make_qkv(1, 2, 100, 100, 32, torch.bfloat16, seed=16)
    do = make_do(q)
    judge_grads(flash_attention_backward_triton(do, q, k, v, *saved(q, k, v, causal), causal=causal),
                do, q, k, v, causal)


def test_backward_long_ragged_sequence():
    # N = 300: several query and key blocks in both kernels, on and below the diagonal, ragged at the end.
    q, k, v = make_qkv(1, 1, 300, 300, 16, torch.float32, seed=300)
    do = make_do(q)
    for causal in (False, True):
        judge_grads(flash_attention_backward_triton(do, q, k, v, *saved(q, k, v, causal), causal=causal),
                    do, q, k, v, causal)


def test_backward_scale_argument():
    q, k, v = make_qkv(1, 2, 40, 40, 16, torch.float32, seed=3)
    do = make_do(q)
    for causal in (False, True):
        grads = flash_attention_backward_triton(do, q, k, v, *saved(q, k, v, causal, 0.3), causal, 0.3)
        judge_grads(grads, do, q, k, v, causal, 0.3)


def test_backward_uses_the_forward_outputs_and_is_deterministic():
    q, k, v = make_qkv(1, 2, 70, 70, 32, torch.float32, seed=4)
    do = make_do(q)
    o, lse = flash_attention_forward_triton(q, k, v, causal=True)
    first = flash_attention_backward_triton(do, q, k, v, o, lse, causal=True)
    judge_grads(first, do, q, k, v, True)
    again = flash_attention_backward_triton(do, q, k, v, o, lse, causal=True)
    assert all(torch.equal(a, b) for a, b in zip(first, again))  # no atomics: bitwise repeatable


def test_backward_non_contiguous_inputs_and_broadcast_do():
    q, k, v = make_qkv(2, 2, 50, 50, 32, torch.float32, seed=5, bnhd=True)  # (B, N, H, D) views
    assert not q.is_contiguous()
    o, lse = saved(q, k, v, True)
    o = o.transpose(1, 2).contiguous().transpose(1, 2)  # o in the same (B, N, H, D) layout
    for do in (make_do(q).transpose(1, 2).contiguous().transpose(1, 2),
               torch.ones(1, dtype=q.dtype, device=q.device).expand(q.shape)):  # the gradient of o.sum(): stride 0
        grads = flash_attention_backward_triton(do, q, k, v, o, lse, causal=True)
        judge_grads(grads, do, q, k, v, True)
        plain = flash_attention_backward_triton(*(x.contiguous() for x in (do, q, k, v, o, lse)), causal=True)
        for g, p in zip(grads, plain):
            assert_close(g, p)


def plain_lse_backward(do, q, k, v, o, lse):
    """The same algorithm (P rebuilt as exp(s·QKᵀ − lse)) in plain PyTorch, in q's dtype."""
    scale = q.shape[-1] ** -0.5
    p = torch.exp(q @ k.transpose(-2, -1) * scale - lse.to(q.dtype)[..., None])
    ds = p * (do @ v.transpose(-2, -1) - (do * o).sum(-1, keepdim=True))
    return ds @ k * scale, ds.transpose(-2, -1) @ q * scale, p.transpose(-2, -1) @ do


def test_backward_large_scores_do_not_overflow():
    # Scores up to ~900: exp(S) alone overflows float32, exp(S − lse) <= 1 does not. Rebuilding P
    # from a float32 lse ~ 900 costs ~ eps·|lse| of relative accuracy in P whichever way it is
    # computed, so the bar is the same recompute done plainly in float32 (the low-precision rule).
    q, k, v = make_qkv(1, 1, 50, 50, 16, torch.float32, seed=2)
    q, k = q * 30, k * 30
    do = make_do(q)
    o, lse = saved(q, k, v)
    assert (q @ k.transpose(-2, -1) / 4).max() > 88.8  # log(float32 max)
    grads = flash_attention_backward_triton(do, q, k, v, o, lse)
    assert all(torch.isfinite(g).all() for g in grads)
    expected = grads64(do, q, k, v)
    for name, g, e, b in zip(("dq", "dk", "dv"), grads, expected, plain_lse_backward(do, q, k, v, o, lse)):
        assert_close(g, e, baseline=b, what=name)


# ------------------------------------------------------------------ autograd Function


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("causal", [False, True])
def test_flash_attention_autograd_end_to_end(dtype, causal):
    q, k, v = (x.requires_grad_() for x in make_qkv(1, 2, 45, 45, 64, dtype, seed=9))
    w = make_do(q, seed=2)
    o = flash_attention_triton(q, k, v, causal=causal)
    assert_close(o, ref64(q.detach(), k.detach(), v.detach(), causal)[0],
                 baseline=attention.naive_attention(q, k, v, causal) if dtype != torch.float32 else None)
    (o * w).sum().backward()  # upstream gradient dO = w
    judge_grads((q.grad, k.grad, v.grad), w, q.detach(), k.detach(), v.detach(), causal)


def test_flash_attention_in_a_layer_with_head_views():
    # x (B, N, C) -> q, k, v heads as non-contiguous views -> attention -> merge -> loss, as in
    # the lab's harness; gradients reach the input through the Triton backward.
    B, N, C, H = 2, 33, 64, 4
    g = torch.Generator().manual_seed(7)
    x, w_qkv, target = (torch.randn(shape, generator=g, dtype=torch.float64).to(device.DEVICE)
                        for shape in ((B, N, C), (C, 3 * C), (B, N, C)))
    w_qkv = w_qkv / C ** 0.5

    def loss_and_grad(attn, dtype):
        xx = x.to(dtype).requires_grad_()
        q, k, v = (xx @ w_qkv.to(dtype)).view(B, N, 3, H, C // H).permute(2, 0, 3, 1, 4)
        o = attn(q, k, v, causal=True)  # (B, H, N, D)
        loss = ((o.transpose(1, 2).reshape(B, N, C) - target.to(dtype)) ** 2).mean()
        loss.backward()
        return loss.detach(), xx.grad

    loss, grad = loss_and_grad(flash_attention_triton, torch.float32)
    loss64, grad64 = loss_and_grad(lambda *a, **kw: ref64(*a, **kw)[0], torch.float64)
    assert_close(loss, loss64, dtype=torch.float32, what="loss")
    assert_close(grad, grad64, what="dL/dx")


def test_flash_attention_saves_no_n_by_n_tensor():
    n, D = 48, 16
    q, k, v = (x.requires_grad_() for x in make_qkv(1, 2, n, n, D, seed=6))
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        o = flash_attention_triton(q, k, v, causal=True)
    assert sorted(shapes) == sorted([(1, 2, n, D)] * 4 + [(1, 2, n)])  # q, k, v, o and lse
    assert all(s[-2:] != (n, n) for s in shapes)
    o.sum().backward()
    assert all(x.grad is not None and x.grad.shape == x.shape for x in (q, k, v))


def test_flash_attention_gradient_only_where_asked():
    q, k, v = make_qkv(1, 1, 20, 20, 16, seed=8)
    q.requires_grad_()
    flash_attention_triton(q, k, v).sum().backward()
    assert q.grad is not None and k.grad is None and v.grad is None


# ------------------------------------------------------------------------- bad input


def good_args():
    q, k, v = make_qkv(1, 2, 8, 8, 16)
    o, lse = saved(q, k, v)
    return make_do(q), q, k, v, o, lse


def bad_backward_inputs():
    do, q, k, v, o, lse = good_args()
    return [
        ("do has the wrong shape", (do[:, :, :5], q, k, v, o, lse), "do must have shape"),
        ("do is not a tensor", (do.tolist(), q, k, v, o, lse), "do must be a torch.Tensor"),
        ("o has the wrong dtype", (do, q, k, v, o.half(), lse), "o must have dtype torch.float32"),
        ("lse has the wrong shape", (do, q, k, v, o, lse[..., None]), r"lse must have shape \(B, H, N_q\)"),
        ("lse in float64", (do, q, k, v, o, lse.double()), "lse must have dtype torch.float32"),
        ("lse on another device", (do, q, k, v, o, lse.to("meta")), "lse must be on q's device"),
        ("q, k, v shapes disagree", (do, q, k, v[:, :, :5], o, lse), "k and v"),
        ("head dim 8", (do[..., :8], q[..., :8], k[..., :8], v[..., :8], o[..., :8], lse),
         "head dim D=8.*16, 32, 64, 128"),
        ("float64", tuple(x.double() for x in (do, q, k, v, o)) + (lse,), "float64.*float32, float16"),
    ]


@pytest.mark.parametrize("label, args, words", bad_backward_inputs(),
                         ids=[c[0] for c in bad_backward_inputs()])
def test_backward_bad_inputs_raise_value_error(label, args, words):
    with pytest.raises(ValueError, match=words):
        flash_attention_backward_triton(*args)


def test_backward_causal_needs_square_attention():
    do, q, k, v, o, lse = good_args()
    with pytest.raises(ValueError, match="N_q == N_kv"):
        flash_attention_backward_triton(do, q, k[:, :, :5], v[:, :, :5], o, lse, causal=True)


@pytest.mark.parametrize("D", [8, 48, 96, 256])
def test_flash_attention_unsupported_head_dim(D):
    q, k, v = make_qkv(1, 1, 4, 4, D)
    with pytest.raises(ValueError, match="head dim D=%d.*16, 32, 64, 128" % D):
        flash_attention_triton(q, k, v)
    assert D not in HEAD_DIMS


def test_flash_attention_unsupported_dtype():
    assert torch.float64 not in DTYPES
    with pytest.raises(ValueError, match="float64"):
        flash_attention_triton(*make_qkv(1, 1, 4, 4, 16, torch.float64))


def test_wrong_device_for_the_mode():
    do, q, k, v, o, lse = (x.to("meta") for x in good_args())
    with pytest.raises(ValueError, match="CPU tensors" if device.INTERPRET else "CUDA tensors"):
        flash_attention_backward_triton(do, q, k, v, o, lse)


def test_the_interpreters_numpy_arithmetic_does_not_warn():
    """A NaN query row and causal rows with masked keys: IEEE arithmetic on purpose, which a GPU does
    silently; the interpreter's numpy must not warn either (python -W error would make it an error)."""
    import warnings

    q, k, v = make_qkv(1, 2, 40, 40, 16, torch.float32, seed=3)
    q[0, 1, 7] = float("nan")
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        o = flash_attention_triton(*leaves, causal=True)
        o.backward(make_do(o))
    assert torch.isnan(o[0, 1, 7]).all() and torch.isfinite(o[0, 0]).all()
    assert torch.isfinite(leaves[1].grad[0, 0]).all()
