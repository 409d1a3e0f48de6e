"""labkit.check.twins: every twin a probe names is a real mistake, written out, that its checker rejects with that
probe's own hint (the twin's evidence isolates it), and a twin that breaks down is no evidence."""
from __future__ import annotations

import pytest
import torch

import labkit  # noqa: F401  (the Triton interpreter without CUDA)
from labkit import check, device
from labkit.check.core import CHECKERS, CheckFailed, Outcome, Probe, agrees, clone
from labkit.check.twins import twin

TWINS = [(name, j, i) for name in sorted(CHECKERS) for j, p in enumerate(CHECKERS[name]().probes)
         for i in range(len(getattr(p.violated, "mistakes", ())))]


@pytest.mark.parametrize("name, j, i", TWINS, ids=[f"{n}-{j}-{i}" for n, j, i in TWINS])
def test_each_twin_is_a_mistake_named_by_its_own_probe(name, j, i):
    if name.endswith("_triton") and not device.HAS_TRITON:
        pytest.skip(device.TRITON_MISSING)
    build = CHECKERS[name]
    probe = build().probes[j]
    mistake = probe.violated.mistakes[i]
    wrong = mistake(*clone(probe.args), **clone(probe.kwargs))
    right = build().reference(*clone(probe.args), **clone(probe.kwargs))
    assert not agrees(wrong, tuple(right) if isinstance(right, list) else right, build().compare), \
        "the twin agrees with labkit on its own probe: it isolates nothing"
    with pytest.raises(CheckFailed) as err:
        getattr(check, name)(mistake)
    assert err.value.hint.startswith(probe.hint), (probe.hint, err.value.hint)


def test_a_twin_that_breaks_down_is_no_evidence():
    nan = twin(lambda x: torch.full((2,), float("nan")))
    assert not nan(Outcome(value=torch.full((2,), float("nan"))), Probe("p", (torch.zeros(2),), {}, "hint", nan))
    raises = twin(lambda x: 1 / 0)
    assert not raises(Outcome(value=torch.ones(2)), Probe("p", (torch.zeros(2),), {}, "hint", raises))
    same = twin(lambda x: x + 2, lambda x: x + 1)
    assert same(Outcome(value=torch.ones(2)), Probe("p", (torch.zeros(2),), {}, "hint", same))
    assert not same(Outcome(value=torch.zeros(2)), Probe("p", (torch.zeros(2),), {}, "hint", same))
