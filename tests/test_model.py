"""labkit.model: the lab's attention layer and a tiny transformer trained with each attention core.

Tolerance of the training comparison: two runs that differ only in the attention core start
from the same weights and see the same batches, so their losses differ only by float32
rounding, carried forward by the optimiser. Measured on CPU (dim 32, 2 heads, 1 layer,
N = 32, 60 AdamW steps at lr 1e-2, losses 0.5-3 nats): max |Δloss| vs SDPA 2e-6 nats for
autograd through naive_attention, 5e-7 for attention_backward.flash_attention, 2e-7 for
kernels.flash_attention_triton (20 steps on batches of 2: the interpreter needs about 0.3 s per step
per sequence); at 300 steps with 2 layers, below 1e-5. The test asks for the table's float32
tolerance, atol 1e-5 + rtol 1e-4 · loss (6e-5 to 3e-4 here), 30x or more above that drift and
far below a real error: a core without the causal mask, or a backward without the D term,
moves the curve by 0.5 nats or more within 60 steps.
"""
import math

import pytest
import torch

import labkit  # noqa: F401  (device switch first)
from labkit import attention, attention_backward, device, kernels, model
from labkit.check import assert_close

VOCAB, DIM, HEADS, LAYERS, N, STEPS, LR = 16, 32, 2, 1, 32, 60, 1e-2
SHORT = {"labkit flash (Triton)": (20, 2)}  # core: (steps, batch size), kept short for the interpreter


def naive(q, k, v, causal=False):
    return attention.naive_attention(q, k, v, causal)


CORES = {
    "sdpa": lambda: model.sdpa,
    "naive (autograd)": lambda: naive,
    "labkit flash (PyTorch)": lambda: attention_backward.flash_attention,
    "labkit flash (Triton)": lambda: kernels.flash_attention_triton,
}


@pytest.fixture(scope="module")
def data():
    return model.repeat_sequences(512, N + 1, VOCAB, period=4, seed=0)


def losses(core, data, steps=STEPS, batch_size=8):
    net = model.TinyTransformer(VOCAB, DIM, HEADS, LAYERS, N, attention=CORES[core](), seed=0)
    return model.train(net.to(device.DEVICE), data, steps, lr=LR, seed=0, batch_size=batch_size)


@pytest.fixture(scope="module")
def sdpa_losses(data):
    return losses("sdpa", data)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n", [1, 17])
@pytest.mark.parametrize("core", list(CORES))
def test_attention_layer_with_each_core(core, n, causal):
    torch.manual_seed(0)
    ref = model.AttentionLayer(DIM, HEADS).to(device.DEVICE)
    layer = model.AttentionLayer(DIM, HEADS, attention=CORES[core]()).to(device.DEVICE)
    layer.load_state_dict(ref.state_dict())
    x = torch.randn(2, n, DIM, device=device.DEVICE, requires_grad=True)
    out = layer(x, causal=causal)
    assert out.shape == (2, n, DIM) and out.dtype == torch.float32
    assert_close(out, ref(x, causal=causal))
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    (ref_grad,) = torch.autograd.grad(ref(x, causal=causal).square().sum(), x)
    assert_close(grad, ref_grad, what="dL/dx")


def test_attention_layer_bad_input():
    with pytest.raises(ValueError, match="multiple of heads"):
        model.AttentionLayer(30, 4)
    with pytest.raises(ValueError, match=r"shape \(B, N, 32\)"):
        model.AttentionLayer(32, 2)(torch.randn(2, 5, 16))
    with pytest.raises(ValueError, match="N <= 8"):
        model.TinyTransformer(VOCAB, DIM, HEADS, 1, 8)(torch.zeros(1, 9, dtype=torch.long))


def test_tiny_transformer_is_causal():
    net = model.TinyTransformer(VOCAB, DIM, HEADS, 2, N)
    idx = torch.randint(0, VOCAB, (1, 12), generator=torch.Generator().manual_seed(0))
    changed = idx.clone()
    changed[0, 7:] = (changed[0, 7:] + 1) % VOCAB  # only tokens from position 7 on differ
    a, b = net(idx), net(changed)
    assert_close(a[:, :7], b[:, :7])  # earlier positions cannot see later tokens
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_weights_and_data_are_deterministic():
    one, two = (model.TinyTransformer(VOCAB, DIM, HEADS, 1, N, attention=a, seed=3)
                for a in (model.sdpa, naive))
    assert all(torch.equal(p, q) for p, q in zip(one.parameters(), two.parameters()))
    assert torch.equal(model.repeat_sequences(4, 9, VOCAB, seed=1),
                       model.repeat_sequences(4, 9, VOCAB, seed=1))
    seqs = model.repeat_sequences(4, 9, VOCAB, period=3, seed=1)
    assert seqs.shape == (4, 9) and torch.equal(seqs[:, 3:], seqs[:, :-3])


def test_training_with_sdpa_decreases_the_loss(sdpa_losses):
    assert len(sdpa_losses) == STEPS and all(math.isfinite(x) for x in sdpa_losses)
    assert abs(sdpa_losses[0] - math.log(VOCAB)) < 0.5  # starts near chance
    # A pattern repeated every 4 tokens: only attention to 4 tokens back predicts it. Without
    # working attention the loss stays near log(16) = 2.77 nats.
    assert sum(sdpa_losses[-5:]) / 5 < 1.0


@pytest.mark.parametrize("core", ["naive (autograd)", "labkit flash (PyTorch)", "labkit flash (Triton)"])
def test_training_follows_sdpa(core, data, sdpa_losses):
    if core in SHORT:
        steps, batch_size = SHORT[core]
        expected = losses("sdpa", data, steps, batch_size)
    else:
        steps, batch_size, expected = STEPS, 8, sdpa_losses
    got = losses(core, data, steps, batch_size)
    assert len(got) == steps
    assert_close(torch.tensor(got), torch.tensor(expected), what=f"loss curve ({core})")


def test_train_rejects_bad_data():
    net = model.TinyTransformer(VOCAB, DIM, HEADS, 1, N)
    with pytest.raises(ValueError, match="data must have shape"):
        model.train(net, torch.zeros(4, 1, dtype=torch.long), 1)


# Greedy generation with a KV cache (notebook 10). A 2-layer model (so each layer must find its
# own cache entry) trained briefly on the period-4 sequences: from a prompt of 4 or more tokens it
# continues the pattern, so equal tokens with and without the cache are a meaningful check, and
# a cache that loses a key, a layer or a position changes them.
GEN_LAYERS, GEN_LEN, GEN_STEPS = 2, 16, 80


@pytest.fixture(scope="module")
def trained():
    net = model.TinyTransformer(VOCAB, DIM, HEADS, GEN_LAYERS, GEN_LEN, seed=0)
    model.train(net, model.repeat_sequences(512, GEN_LEN + 1, VOCAB, period=4, seed=0), GEN_STEPS, lr=LR, seed=0)
    return net.eval()


def prompts(batch, length):
    return model.repeat_sequences(batch, GEN_LEN, VOCAB, period=4, seed=5)[:, :length]


@pytest.mark.parametrize("length", [1, 6])
@pytest.mark.parametrize("batch", [1, 3])
def test_generate_with_cache_matches_recomputing(trained, batch, length):
    prompt = prompts(batch, length)
    steps = GEN_LEN - length
    expected = model.generate(trained, prompt, steps, cache=False)
    got = model.generate(trained, prompt, steps, cache=True)
    assert got.shape == (batch, GEN_LEN) and got.dtype == torch.int64
    assert torch.equal(got[:, :length], prompt)
    assert torch.equal(got, expected)
    if length >= 4:  # the trained model continues the repeated pattern
        assert torch.equal(got, model.repeat_sequences(batch, GEN_LEN, VOCAB, period=4, seed=5))


def test_cached_logits_match_the_full_forward(trained):
    seq = prompts(3, GEN_LEN)
    with torch.no_grad():
        full = trained(seq)  # (B, N, vocab)
        cache = model.KVCache()
        steps = [trained(seq[:, :5], cache)] + [trained(seq[:, i:i + 1], cache) for i in range(5, GEN_LEN)]
    assert cache.length == GEN_LEN
    assert_close(torch.cat(steps, dim=1), full, what="logits, prefill then one token at a time")
    with pytest.raises(ValueError, match="one new token at a time"):
        trained(seq[:, :2], model.KVCache(cache.k[:], cache.v[:], 1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kv_cache_shapes_and_bytes(dtype):
    net = model.TinyTransformer(VOCAB, DIM, HEADS, GEN_LAYERS, GEN_LEN).to(dtype)
    prompt, steps, d = prompts(3, 5), 7, DIM // HEADS
    cache = model.KVCache()
    out = model.generate(net, prompt, steps, cache=cache)
    assert out.shape == (3, 5 + steps)
    n = 5 + steps - 1  # the last generated token is never fed
    assert cache.length == n and len(cache.k) == len(cache.v) == GEN_LAYERS
    for k, v in zip(cache.k, cache.v):
        assert k.shape == v.shape == (3, HEADS, n, d) and k.dtype == v.dtype == dtype
    size = torch.finfo(dtype).bits // 8
    assert model.kv_cache_bytes_of(cache) == 2 * GEN_LAYERS * 3 * HEADS * n * d * size
    one = model.KVCache()
    model.generate(net, prompt, 1, cache=one)
    assert one.length == 5 and one.k[0].shape == (3, HEADS, 5, d)
    for t in cache.k + cache.v + one.k + one.v:  # the cache holds no more memory than it counts
        assert t.untyped_storage().nbytes() == t.numel() * size
    none = model.KVCache()
    assert torch.equal(model.generate(net, prompt, 0, cache=none), prompt)
    assert none.length == 0 and model.kv_cache_bytes_of(none) == 0


def test_generate_rejects_bad_input():
    net = model.TinyTransformer(VOCAB, DIM, HEADS, 1, GEN_LEN)
    prompt = prompts(2, 5)
    with pytest.raises(ValueError, match=r"P \+ steps = 5 \+ 12 exceeds the model's max_len = 16"):
        model.generate(net, prompt, 12)
    with pytest.raises(ValueError, match="2-D integer tensor"):
        model.generate(net, prompt.float(), 3)
    with pytest.raises(ValueError, match="2-D integer tensor"):
        model.generate(net, prompt[0], 3)
    with pytest.raises(ValueError, match="2-D integer tensor"):
        model.generate(net, prompt[:, :0], 3)
    with pytest.raises(ValueError, match="steps must be >= 0, got -1"):
        model.generate(net, prompt, -1)
    cache = model.KVCache()
    model.generate(net, prompt, 2, cache=cache)
    with pytest.raises(ValueError, match="empty KVCache"):
        model.generate(net, prompt, 2, cache=cache)
    assert model.generate(net, prompt.int(), 11).shape == (2, GEN_LEN)  # exactly max_len is fine


def test_generate_with_flash_attention_core(trained):
    calls = []

    def flash(q, k, v, causal=False):
        calls.append((q.shape[2], k.shape[2], causal))
        return attention_backward.flash_attention(q, k, v, causal)

    net = model.TinyTransformer(VOCAB, DIM, HEADS, GEN_LAYERS, GEN_LEN, attention=flash)
    net.load_state_dict(trained.state_dict())
    for length in (1, 6):
        prompt, steps = prompts(3, length), GEN_LEN - length
        calls.clear()
        got = model.generate(net, prompt, steps, cache=True)
        assert calls == [(length, length, True)] * GEN_LAYERS  # the core runs the prefill only
        assert torch.equal(got, model.generate(net, prompt, steps, cache=False))
        assert torch.equal(got, model.generate(trained, prompt, steps, cache=False))
