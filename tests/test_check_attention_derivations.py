"""The pen-and-paper checkers (notebooks 05 and 07): references pass, each catalogued mistake is named."""
import itertools
import math

import numpy as np
import pytest
import torch

from labkit import check, hbm
from labkit.check.attention_derivations import count_with
from labkit.check.core import CheckFailed
from labkit.derivatives import softmax_jacobian

from hints import assert_rejected_with_hint


def _bc(d, M):
    return math.ceil(M / (4 * d))


def test_counting_loop_equals_its_closed_form_and_the_slips_helper():
    for N, d, M in itertools.product([1, 7, 100, 199, 200, 201, 1100, 4096], [16, 64, 128], [1000, 4096, 51200]):
        n = hbm.flash_hbm_accesses(N, d, M)
        assert n == hbm.flash_hbm_accesses_closed_form(N, d, M) == count_with(N, d, M)
        assert n == 3 * N * d + 2 * N + math.ceil(N / _bc(d, M)) * (3 * N * d + 4 * N)


def test_counts_of_the_notebook_table():
    assert hbm.flash_block_sizes(64, 51200) == (200, 64)
    assert hbm.standard_hbm_accesses(1024, 64) == 4 * 1024**2 + 4 * 1024 * 64
    assert hbm.flash_hbm_accesses(1024, 64, 51200) == 1_402_880
    assert hbm.flash_q_outer_hbm_accesses(1024, 64, 51200) == 918_528


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_hbm_counts_reject_non_positive_ints(bad):
    with pytest.raises(ValueError):
        hbm.flash_hbm_accesses(bad, 64, 51200)


def _loop(N, d, M, *, init=True, kv=2, o_reads=True, o_writes=True, lm_reads=True, lm_writes=True,
          ceil_bc=True, bc=None, rows=lambda b, n_left: min(b, n_left), kv_inner=False):
    """A student's counting loop over Algorithm 1, one slip switched on."""
    B_c = bc if bc is not None else (math.ceil(M / (4 * d)) if ceil_bc else M // (4 * d))
    B_r = min(B_c, d)
    total = (N * d + 2 * N) if init else 0
    for j in range(0, N, B_c):
        total += 0 if kv_inner else kv * rows(B_c, N - j) * d
        for i in range(0, N, B_r):
            b = rows(B_r, N - i)
            total += kv * rows(B_c, N - j) * d if kv_inner else 0
            total += b * d + o_reads * b * d + lm_reads * 2 * b + o_writes * b * d + lm_writes * 2 * b
    return total


HBM_WRONG = {
    "Θ(N²d²/M) is a bound": lambda N, d, M: 12 * N**2 * d**2 / M,
    "Θ(N²d²/M) is a bound ": lambda N, d, M: N**2 * d**2 // M,
    "d squared": lambda N, d, M: 12 * N**2 * d / M,
    "not bytes": lambda N, d, M: 2 * hbm.flash_hbm_accesses(N, d, M),
    "query tiles outside": lambda N, d, M: N * d + math.ceil(N / _bc(d, M)) * 2 * N * d + N * d + N,
    "you counted one of the two": lambda N, d, M: _loop(N, d, M, o_writes=False),
    "you counted one of the two ": lambda N, d, M: _loop(N, d, M, o_reads=False),
    "never stays on chip": lambda N, d, M: _loop(N, d, M, o_reads=False, o_writes=False),
    "running statistics": lambda N, d, M: _loop(N, d, M, lm_reads=False, lm_writes=False),
    "running statistics ": lambda N, d, M: _loop(N, d, M, lm_reads=False, lm_writes=False) - 2 * N,
    "line 2 initialises": lambda N, d, M: _loop(N, d, M, init=False),
    "each loaded once": lambda N, d, M: _loop(N, d, M, kv=0),
    "again for every query tile": lambda N, d, M: _loop(N, d, M, kv_inner=True),
    "one N×d matrix": lambda N, d, M: _loop(N, d, M, kv=1),
    "partial last key tile": lambda N, d, M: 3 * N * d + 2 * N + (N // _bc(d, M)) * (3 * N * d + 4 * N),
    "partial last tile moves only": lambda N, d, M: _loop(N, d, M, rows=lambda b, n_left: b),
    "number of KEY tiles": lambda N, d, M: 3 * N * d + 2 * N + math.ceil(N / min(_bc(d, M), d)) * (3 * N * d + 4 * N),
    "not M / 4 * d": lambda N, d, M: _loop(N, d, M, bc=math.ceil(M / 4 * d)),
    "rounds UP": lambda N, d, M: _loop(N, d, M, ceil_bc=False),
    "whole number": lambda N, d, M: 3 * N * d + 2 * N + (N / _bc(d, M)) * (3 * N * d + 4 * N),
}


def test_the_references_pass(capsys):
    check.flash_hbm_accesses(hbm.flash_hbm_accesses)
    check.flash_hbm_accesses(hbm.flash_hbm_accesses_closed_form)
    check.softmax_jacobian(softmax_jacobian)
    check.softmax_jacobian(lambda p: torch.autograd.functional.jacobian(
        lambda s: torch.softmax(s, -1), torch.log(p)) if p.dim() == 1 else softmax_jacobian(p))
    assert capsys.readouterr().out.count("✔") == 4  # an integral float is refused: the spec says an int (below)


@pytest.mark.parametrize("hint,wrong", [(h.strip(), w) for h, w in HBM_WRONG.items()], ids=list(HBM_WRONG))
def test_every_hbm_mistake_is_named(hint, wrong):
    assert_rejected_with_hint(check.flash_hbm_accesses, wrong, hint)


def test_a_non_number_is_reported():
    with pytest.raises(AssertionError, match="expected an int"):
        check.flash_hbm_accesses(lambda N, d, M: str(hbm.flash_hbm_accesses(N, d, M)))


def _diag(p):
    return torch.diag_embed(p)


def _outer(p):
    return p.unsqueeze(-1) * p.unsqueeze(-2)


JACOBIAN_WRONG = {
    "is not 0 for j ≠ l": _diag,
    "minus sign": lambda p: _diag(p) + _outer(p),
    "sign flipped": lambda p: _outer(p) - _diag(p),
    "diagonal term is missing": lambda p: -_outer(p),
    "elementwise": lambda p: _diag(p) - p * p if p.dim() == 1 else _diag(p) - (p * p).unsqueeze(-2),
    "elementwise ": lambda p: _diag(p - p**2),
    "dot product": lambda p: _diag(p) - (p * p).sum(-1)[..., None, None],
    "log-softmax": lambda p: torch.eye(p.shape[-1], dtype=p.dtype) - torch.ones_like(p).unsqueeze(-1) * p.unsqueeze(-2),
    "do not apply": lambda p: softmax_jacobian(torch.softmax(p, -1)),
    "do not apply ": lambda p: softmax_jacobian(torch.exp(p)),
    "diag_embed": lambda p: torch.diag(p) - torch.outer(p, p),
    "diag_embed ": lambda p: torch.diag_embed(p) - p[:, None] * p[None, :],  # right for one vector only
    "input's dtype": lambda p: softmax_jacobian(p.double()),
}


@pytest.mark.parametrize("hint,wrong", [(h.strip(), w) for h, w in JACOBIAN_WRONG.items()], ids=list(JACOBIAN_WRONG))
def test_every_jacobian_mistake_is_named(hint, wrong):
    assert_rejected_with_hint(check.softmax_jacobian, wrong, hint)


def test_the_jacobian_matches_autograd_and_its_rows_sum_to_zero():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(4, 7, generator=g, dtype=torch.float64)
    J = softmax_jacobian(torch.softmax(s, -1))
    for row in range(4):
        auto = torch.autograd.functional.jacobian(lambda x: torch.softmax(x, -1), s[row])
        assert torch.allclose(J[row], auto, atol=1e-14)
    assert torch.allclose(J.sum(-1), torch.zeros(4, 7, dtype=torch.float64), atol=1e-15)


def test_checker_docstrings_list_their_properties():
    for name in ("flash_hbm_accesses", "softmax_jacobian"):
        assert "Properties:" in getattr(check, name).__doc__


@pytest.mark.parametrize("wrap, accepted", [(int, True), (np.int64, True), (float, False),
                                             (lambda v: torch.tensor(v), False)])
def test_the_hbm_count_is_an_int_numpy_integers_included(wrap, accepted, capsys):
    """Issue 20, item 6: the spec says an int. The right value as a float or a tensor is refused by its type."""
    from labkit import hbm
    fn = lambda N, d, M: wrap(hbm.flash_hbm_accesses(N, d, M))  # noqa: E731
    if accepted:
        check.flash_hbm_accesses(fn)
        assert capsys.readouterr().out.startswith("✔ flash_hbm_accesses")
    else:
        with pytest.raises(CheckFailed) as err:
            check.flash_hbm_accesses(fn)
        assert "the right value" in str(err.value) and err.value.hint.startswith("return the count as an int")
