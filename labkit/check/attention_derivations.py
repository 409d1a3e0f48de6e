"""Checkers for the pen-and-paper exercises of notebooks 05 and 07, checked by their numbers.

``flash_hbm_accesses`` (5.2): the HBM element accesses of FlashAttention's Algorithm 1 for an
on-chip memory of M elements. ``softmax_jacobian`` (7.0): J = diag(p) − p pᵀ. Both results are
judged exactly (the count) or at the input dtype's tolerance (the Jacobian); probes name the
usual mistakes by the number or the matrix they produce.
"""
from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch

from labkit import hbm
from labkit.check.evidence import reads
from labkit.check.core import Case, Checker, DtypeMismatch, Probe, checker, describe, is_number, rng_seed
from labkit.derivatives import softmax_jacobian as jacobian_reference

# ------------------------------------------------------------------ flash_hbm_accesses


def _as_number(out) -> float:
    """The student's count as a float (a one-element tensor or array too); AssertionError if not a number."""
    if isinstance(out, torch.Tensor) and out.numel() == 1:
        return float(out.item())
    if isinstance(out, np.ndarray) and out.size == 1:
        return float(out.item())
    if isinstance(out, (bool, np.bool_)) or not isinstance(out, (Real, np.number)):
        raise AssertionError(f"returned {type(out).__name__}, expected an int (a number of element accesses)")
    return float(out)


def _exact_count(out, expected: int) -> None:
    """The value first (the probes name wrong counts), then the type: an int (a numpy integer is one)."""
    value = _as_number(out)
    if value != expected:
        shown = f"{value:,.0f}" if value == int(value) else f"{value:,.3f}"
        raise AssertionError(f"count: got {shown}, expected {expected:,} "
                             f"(off by {value - expected:+,.0f}, a factor {value / expected:.4g})")
    if not is_number(out, integer=True):
        raise DtypeMismatch(f"count: the right value, {expected:,}, but returned as {describe(out)}, not an int")


def count_with(N: int, d: int, M: int, *, init: bool = True, kv: int = 2, o_passes: int = 2,
               lm: bool = True, ragged: bool = True, b_c: int | None = None, t_c: int | None = None) -> int:
    """Algorithm 1's count with one part changed: what a given slip produces (used by the probes and tests).

    ``kv`` matrices loaded per key tile (2: K and V), ``o_passes`` of O per tile pair (2: read and
    write), ``lm`` the ℓ, m traffic, ``init`` line 2, ``ragged`` partial tiles at their true size,
    ``b_c`` and ``t_c`` override the key-tile size and count.
    """
    B_c = b_c if b_c is not None else math.ceil(M / (4 * d))
    B_r = min(B_c, d)
    T_c = t_c if t_c is not None else math.ceil(N / B_c)
    rows_kv = N if ragged else T_c * B_c  # rows of K, V loaded over all key tiles
    rows_q = N if ragged else math.ceil(N / B_r) * B_r  # rows of Q, O, l, m streamed per key tile
    total = (N * d + 2 * N) * init if lm else N * d * init
    total += kv * rows_kv * d if t_c is None else kv * N * d
    total += T_c * rows_q * (d + o_passes * d + (4 if lm else 0))
    return total


def _matches(wrong, seen: str):
    """A probe test: the student's count equals what ``wrong(N, d, M)`` gives, and the right count differs."""
    def violated(o, p):
        value, right = _as_number(o.value), hbm.flash_hbm_accesses(*p.args)
        target = wrong(*p.args)
        return value != right and math.isclose(value, target, rel_tol=1e-9) and seen
    return violated


def _near(wrong, seen: str, rel: float = 0.02):
    """Within 2% of an asymptotic formula (a Θ-bound with its constant, not an exact count)."""
    def violated(o, p):
        value = _as_number(o.value)
        return value != hbm.flash_hbm_accesses(*p.args) and abs(value / wrong(*p.args) - 1) < rel and seen
    return violated


def _not_integral(o, p):
    value = _as_number(o.value)
    return value != int(value) and f"returned {value:,.3f}, not a whole number"


def _query_tiles(d: int, M: int, N: int) -> int:
    """T_r = ⌈N/B_r⌉, the number of query tiles of Algorithm 1's inner loop."""
    return math.ceil(N / hbm.flash_block_sizes(d, M)[1])


PAPER = (1100, 64, 51200)  # B_c = 200: T_c = 6 key tiles, the last one 100 rows; B_r = 64 (18 query tiles)
ODD_M = (100, 32, 1000)  # M/(4d) = 7.8: B_c = 8 (13 key tiles), rounding down gives 7 (15 tiles)

_ORDER = ("Algorithm 1 has key tiles OUTSIDE: K_j, V_j are loaded once each, and for every key tile the inner "
          "loop streams all of Q, O, l, m through")


@checker
def flash_hbm_accesses() -> Checker:
    """HBM element accesses of FlashAttention's Algorithm 1, per (batch, head) (notebook 05). Properties:
    an exact integer count (not a Θ-bound, elements not bytes); line 2 writes O, l, m once (Nd + 2N);
    K_j, V_j are loaded once per key tile (2Nd in all); for every (key tile, query tile) pair Q_i, O_i,
    l_i, m_i are read and O_i, l_i, m_i written (3 b_r d + 4 b_r); T_c = ⌈N/B_c⌉ key tiles of
    B_c = ⌈M/(4d)⌉ rows, partial tiles at their true size (B_r does not change the total)."""
    hint_count = "count every element Algorithm 1 reads from or writes to HBM: lines 2, 6, 8, 12 and 13"
    cases = [
        Case("N = 1024, d = 64, M = 51200 (100 KiB of fp16): B_c = 200, last key tile partial",
             (1024, 64, 51200), hint=hint_count),
        Case("N = 800 = 4 key tiles of B_c = 200", (800, 64, 51200), hint=hint_count),
        Case("N = 100 < B_c = 200: a single key tile", (100, 64, 51200), hint=hint_count),
        Case("N = 1000, d = 16, M = 4096: B_c = 64, B_r = 16", (1000, 16, 4096), hint=hint_count),
        Case("M = 1000 is not a multiple of 4d = 128", ODD_M,
             hint="B_c = ⌈M/(4d)⌉ rounds up, and T_c = ⌈N/B_c⌉ counts the partial last tile"),
        Case("N = 513, d = 128, M = 32768: B_c = 64, 9 key tiles", (513, 128, 32768), hint=hint_count),
        Case("N = 16, d = 32, M = 1000: B_c = ⌈7.8⌉ = 8, 2 key tiles (7.8 rows would give 3)", (16, 32, 1000),
             hint="B_c = ⌈M/(4d)⌉ is a whole number of rows: round M/(4d) up before T_c = ⌈N/B_c⌉"),
        Case("N = 1 (one query, one key)", (1, 16, 1024), hint=hint_count),
    ]

    def probe(label, args, hint, violated, control=None) -> Probe:
        return Probe(label, args, {}, hint, violated, control)

    theta = "the paper's Θ(N²d²/M) is a bound on the growth, not the count: count each access exactly"
    probes = [
        probe("N = 1100, d = 64, M = 51200", PAPER, theta,
              _near(lambda N, d, M: 12 * N * N * d * d / M, "your count is 12 N²d²/M, the leading term")),
        probe("N = 1100, d = 64, M = 51200", PAPER, theta,
              _near(lambda N, d, M: N * N * d * d / M, "your count is N²d²/M")),
        probe("N = 1100, d = 64, M = 51200", PAPER,
              "the traffic grows as N²d²/M, with d squared: T_c ≈ 4Nd/M key tiles, each streaming ≈ 3Nd "
              "elements of Q and O; and count exactly, not a Θ-bound",
              lambda o, p: (_near(lambda N, d, M: N * N * d / M, "your count is N²d/M (d instead of d²)")(o, p) or
                            _near(lambda N, d, M: 12 * N * N * d / M, "your count is 12 N²d/M (d instead of d²)")(o, p))),
        probe("N = 1100, d = 64, M = 51200", PAPER, "count elements, not bytes: M is given in elements and "
              "each number read or written is one access, whatever its dtype",
              lambda o, p: (_matches(lambda *a: 2 * hbm.flash_hbm_accesses(*a), "twice the count (fp16 bytes)")(o, p)
                            or _matches(lambda *a: 4 * hbm.flash_hbm_accesses(*a), "4 x the count (fp32 bytes)")(o, p))),
        probe("N = 1100, d = 64, M = 51200", PAPER,
              "that is the count with query tiles outside (FlashAttention-2's order, notebook 06): " + _ORDER,
              _matches(hbm.flash_q_outer_hbm_accesses, "your count equals the query-outer loop order's")),
        probe("N = 1100, d = 64, M = 51200", PAPER,
              "O_i is read (line 8) AND written back (line 12) for every (key tile, query tile) pair: "
              "you counted one of the two",
              _matches(lambda *a: count_with(*a, o_passes=1), "short by T_c·N·d")),
        probe("N = 1100, d = 64, M = 51200", PAPER,
              "O_i is read (line 8) and written back (line 12) for every key tile: it never stays on chip "
              "across key tiles in Algorithm 1",
              _matches(lambda *a: count_with(*a, o_passes=0), "short by 2·T_c·N·d")),
        probe("N = 1100, d = 64, M = 51200", PAPER,
              "the running statistics l_i and m_i (b_r numbers each) are read (line 8) and written (line 13) "
              "for every (key tile, query tile) pair, and initialised in line 2: 4N per key tile, 2N once",
              lambda o, p: (_matches(lambda *a: count_with(*a, lm=False), "no l, m traffic")(o, p) or
                            _matches(lambda N, d, M: count_with(N, d, M) - 4 * N * math.ceil(N / math.ceil(M / (4 * d))),
                                     "short by 4N per key tile")(o, p))),
        probe("N = 1100, d = 64, M = 51200", PAPER,
              "line 2 initialises O = 0, l = 0, m = -inf in HBM: Nd + 2N writes, once",
              lambda o, p: (_matches(lambda *a: count_with(*a, init=False), "short by Nd + 2N")(o, p))),
        probe("N = 1100, d = 64, M = 51200", PAPER,
              "K_j, V_j are loaded once per key tile, in line 6, outside the inner loop: loading them again for "
              "every query tile counts 2·T_r·N·d instead of 2·N·d",
              _matches(lambda N, d, M: count_with(N, d, M) + 2 * N * d * (_query_tiles(d, M, N) - 1),
                       "K, V loaded T_r = ⌈N/B_r⌉ times")),
        probe("N = 1100, d = 64, M = 51200", PAPER,
              "K_j and V_j are each loaded once, in line 6 (2Nd over all key tiles)",
              _matches(lambda *a: count_with(*a, kv=0), "short by 2Nd")),
        probe("N = 1100, d = 64, M = 51200", PAPER,
              "one N×d matrix that crosses HBM once is missing: K and V are both loaded (line 6) and O is "
              "initialised in HBM (line 2)",
              _matches(lambda N, d, M: hbm.flash_hbm_accesses(N, d, M) - N * d, "short by Nd")),
        probe("N = 1100, d = 64, M = 51200", PAPER,
              "T_c = ⌈N/B_c⌉: the partial last key tile still costs a whole pass over Q, O, l, m "
              "(use math.ceil or -(-N // B_c), not N // B_c)",
              _matches(lambda N, d, M: count_with(N, d, M, t_c=N // math.ceil(M / (4 * d))),
                       "one key tile fewer"), control=(800, 64, 51200)),  # whole tiles: right unless B_c is off
        probe("N = 1100, d = 64, M = 51200", PAPER,
              "a partial last tile moves only its actual rows: count min(B, N - start) rows, not a full tile",
              _matches(lambda *a: count_with(*a, ragged=False), "partial tiles counted at full size")),
        probe("N = 1100, d = 64, M = 51200", PAPER,
              "the number of passes over Q, O, l, m is the number of KEY tiles, T_c = ⌈N/B_c⌉ with "
              "B_c = ⌈M/(4d)⌉, not the number of query tiles ⌈N/B_r⌉",
              _matches(lambda N, d, M: count_with(N, d, M, t_c=math.ceil(N / min(math.ceil(M / (4 * d)), d))),
                       "T = ⌈N/B_r⌉ passes")),
        probe("N = 1100, d = 64, M = 51200", PAPER,
              "B_c = ⌈M/(4d)⌉: divide M by 4d, i.e. M / (4 * d), not M / 4 * d",
              _matches(lambda N, d, M: count_with(N, d, M, b_c=math.ceil(M / 4 * d)), "B_c = M·d/4")),
        probe("N = 100, d = 32, M = 1000", ODD_M,
              "B_c = ⌈M/(4d)⌉ rounds UP (math.ceil): M // (4 * d) makes the tiles one row shorter",
              _matches(lambda N, d, M: count_with(N, d, M, b_c=M // (4 * d)), "B_c rounded down")),
        probe("N = 1024, d = 64, M = 51200", (1024, 64, 51200),
              "a number of element accesses is a whole number: use math.ceil for the tile counts and "
              "integer arithmetic", _not_integral),
    ]
    return Checker("flash_hbm_accesses", cases, hbm.flash_hbm_accesses, probes, compare=_exact_count,
                   dtype_hint="return the count as an int: math.ceil gives ints, and int(...) converts a float or "
                              "a tensor (a numpy integer is an int too)")


# -------------------------------------------------------------------- softmax_jacobian


def _probabilities(*shape: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(rng_seed(seed))
    return torch.softmax(torch.randn(*shape, generator=g, dtype=torch.float64) * 1.5, dim=-1).to(dtype)


P5 = _probabilities(5, seed=70)  # distinct, clearly non-uniform probabilities


def _looks_like(make, seen: str):
    """The student's (N, N) matrix on P5 equals ``make(p)`` (and not the Jacobian)."""
    def violated(o, p):
        out, x = o.value.detach().double(), p.args[0]
        want = make(x)
        right = jacobian_reference(x)
        return tuple(out.shape) == tuple(want.shape) and not torch.allclose(out, right, atol=1e-9) and \
            torch.allclose(out, want, atol=1e-9) and seen
    return violated


@reads("error", "shape")
def _batch_shape(o, p):
    x = p.args[0]
    want = tuple(x.shape) + (x.shape[-1],)
    if o.error:
        return f"a batch of shape {tuple(x.shape)} raised {o.error.split(':')[0]}"
    return tuple(o.value.shape) != want and f"a batch of shape {tuple(x.shape)} gave shape {tuple(o.value.shape)}"


@checker
def softmax_jacobian() -> Checker:
    """J = diag(p) − p pᵀ for probability vectors p of shape (..., N), result (..., N, N) (notebook 07). Properties:
    J[j, l] = ∂p_j/∂s_l = p_j(δ_jl − p_l): the diagonal p_j(1 − p_j), off-diagonal −p_j p_l;
    rows sum to 0; a one-hot p gives 0; any leading batch dims; p's dtype; p is not modified."""
    def uniform(n):
        return torch.full((n,), 1.0 / n, dtype=torch.float64)
    one_hot = torch.zeros(4, dtype=torch.float64)
    one_hot[2] = 1.0
    cases = [
        Case("p of 5 probabilities", (_probabilities(5, seed=71),),
             hint="J[j, l] = ∂p_j/∂s_l = p_j (δ_jl − p_l): J = diag(p) − p pᵀ"),
        Case("uniform p = 1/4 (diagonal 3/16, off-diagonal -1/16)", (uniform(4),),
             hint="J[j, l] = p_j (δ_jl − p_l)"),
        Case("one-hot p (a saturated softmax): J = 0", (one_hot,),
             hint="at a one-hot p, diag(p) and p pᵀ are equal, so J = 0"),
        Case("N = 1: p = [1], J = [[0]]", (torch.ones(1, dtype=torch.float64),),
             hint="a softmax of one score is always 1: its derivative is 0"),
        Case("a batch of 3 vectors, shape (3, 6) -> (3, 6, 6)", (_probabilities(3, 6, seed=72),),
             hint="leading dims are a batch: one (N, N) Jacobian per vector"),
        Case("batch dims (2, 3), N = 4 -> (2, 3, 4, 4)", (_probabilities(2, 3, 4, seed=73),),
             hint="leading dims are a batch: one (N, N) Jacobian per vector"),
        Case("float32 p", (_probabilities(7, seed=74, dtype=torch.float32),),
             hint="a float32 p gives a float32 Jacobian"),
        Case("float16 p", (_probabilities(6, seed=75, dtype=torch.float16),),
             hint="a float16 p gives a float16 Jacobian: build every term in p's dtype (torch.eye(N) alone is "
                  "float32; torch.diag_embed(p) keeps p's)"),
    ]

    def diag(p):
        return torch.diag_embed(p)

    def outer(p):
        return p.unsqueeze(-1) * p.unsqueeze(-2)

    def probe(hint, violated, x=P5) -> Probe:
        return Probe("p of 5 probabilities" if x is P5 else f"a batch of shape {tuple(x.shape)}",
                     (x,), {}, hint, violated)

    probes = [
        probe("∂p_j/∂s_l is not 0 for j ≠ l: raising one score lowers every other probability (they still sum "
              "to 1), so J = diag(p) − p pᵀ has the off-diagonal entries −p_j p_l",
              _looks_like(diag, "you returned diag(p)")),
        probe("the outer product enters with a minus sign: J = diag(p) − p pᵀ (each row of J sums to 0, "
              "because Σ_j p_j = 1 whatever s is)", _looks_like(lambda p: diag(p) + outer(p), "diag(p) + p pᵀ")),
        probe("sign flipped: J = diag(p) − p pᵀ, whose diagonal p_j(1 − p_j) is positive (raising s_j raises p_j)",
              _looks_like(lambda p: outer(p) - diag(p), "p pᵀ − diag(p)")),
        probe("the diagonal term is missing: the quotient rule gives p_j δ_jl − p_j p_l, J = diag(p) − p pᵀ",
              _looks_like(lambda p: -outer(p), "−p pᵀ")),
        probe("p * p (or p**2) is elementwise, a vector that broadcasts along the rows or columns: the outer "
              "product is p[..., :, None] * p[..., None, :] (torch.outer for one vector)",
              lambda o, p: (_looks_like(lambda x: diag(x) - (x * x).unsqueeze(-2), "diag(p) − p² per row")(o, p)
                            or _looks_like(lambda x: diag(x) - (x * x).unsqueeze(-1), "diag(p) − p² per column")(o, p)
                            or _looks_like(lambda x: diag(x - x * x), "diag(p − p²)")(o, p))),
        probe("p @ p (p·p) is a dot product, one number: the term is the outer product p pᵀ, an (N, N) matrix",
              _looks_like(lambda p: diag(p) - (p * p).sum(-1)[..., None, None], "diag(p) − (p·p)")),
        probe("that is the Jacobian of log-softmax, I − 1 pᵀ; the softmax's own is diag(p) − p pᵀ",
              _looks_like(lambda p: torch.eye(p.shape[-1], dtype=p.dtype) - torch.ones_like(p).unsqueeze(-1)
                          * p.unsqueeze(-2), "I − 1 pᵀ")),
        probe("the argument is already the probability vector p = softmax(s): use p itself, do not apply "
              "softmax (or exp) to it again",
              lambda o, p: (_looks_like(lambda x: jacobian_reference(torch.softmax(x, -1)), "softmax applied to p")(o, p)
                            or _looks_like(lambda x: jacobian_reference(torch.exp(x)), "exp applied to p")(o, p))),
        probe("a batch of probability vectors (..., N) needs a (..., N, N) result: torch.diag_embed(p) and "
              "p.unsqueeze(-1) * p.unsqueeze(-2) work on any leading dims (torch.diag and torch.outer take one "
              "vector, and p.T @ p sums over the batch)", _batch_shape, x=_probabilities(3, 5, seed=75)),
    ]
    return Checker("softmax_jacobian", cases, jacobian_reference, probes)
