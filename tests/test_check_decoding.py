"""labkit.check.decoding: notebook 10's checkers accept labkit's answers, and every twin a probe names is a real
mistake that the checker rejects with that probe's own hint (its evidence isolates it)."""
from __future__ import annotations

import pytest
import torch

import labkit  # noqa: F401  (the Triton interpreter without CUDA)
from labkit import check, decoding, device
from labkit.check.core import CHECKERS, CheckFailed, agrees, clone
from labkit.kernels import decoding as kernels

NAMES = ["kv_cache_bytes", "combine_partials", "paged_attention", "flash_decode_triton"]
LABKIT = {"kv_cache_bytes": decoding.kv_cache_bytes, "combine_partials": decoding.combine_partials,
          "paged_attention": decoding.paged_attention, "flash_decode_triton": kernels.flash_decode_triton}
TWINS = [(name, j) for name in NAMES for j, p in enumerate(CHECKERS[name]().probes) if hasattr(p.violated, "mistake")]


@pytest.mark.parametrize("name", NAMES)
def test_labkit_passes(name, capsys):
    if name == "flash_decode_triton" and not device.HAS_TRITON:
        pytest.skip(device.TRITON_MISSING)
    getattr(check, name)(LABKIT[name])
    n = len(CHECKERS[name]().cases)
    assert capsys.readouterr().out.strip() == f"✔ {name}: {n}/{n} cases passed"


@pytest.mark.parametrize("name, j", TWINS, ids=[f"{n}-{j}" for n, j in TWINS])
def test_each_twin_is_a_mistake_named_by_its_own_probe(name, j):
    probe = CHECKERS[name]().probes[j]
    mistake = probe.violated.mistake
    wrong = mistake(*clone(probe.args), **clone(probe.kwargs))
    right = CHECKERS[name]().reference(*clone(probe.args), **clone(probe.kwargs))
    if name == "flash_decode_triton":
        right = tuple(right)
    assert not agrees(wrong, right), "the twin agrees with labkit on its own probe: it isolates nothing"
    with pytest.raises(CheckFailed) as err:
        getattr(check, name)(mistake)
    assert err.value.hint.startswith(probe.hint), (probe.hint, err.value.hint)


def test_a_twin_of_all_nan_is_no_evidence():
    from labkit.check.core import Outcome, Probe
    from labkit.check.decoding import twin
    nan = twin(lambda x: torch.full((2,), float("nan")))
    probe = Probe("p", (torch.zeros(2),), {}, "hint", nan)
    assert not nan(Outcome(value=torch.full((2,), float("nan"))), probe)
    same = twin(lambda x: x + 1)
    assert same(Outcome(value=torch.ones(2)), Probe("p", (torch.zeros(2),), {}, "hint", same))
