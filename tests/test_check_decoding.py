"""labkit.check.decoding: notebook 10's checkers accept labkit's answers (their twins: tests/test_check_twins.py)."""
from __future__ import annotations

import pytest
import labkit  # noqa: F401  (the Triton interpreter without CUDA)
from labkit import check, decoding, device
from labkit.check.core import CHECKERS
from labkit.kernels import decoding as kernels

NAMES = ["kv_cache_bytes", "combine_partials", "paged_attention", "flash_decode_triton"]
LABKIT = {"kv_cache_bytes": decoding.kv_cache_bytes, "combine_partials": decoding.combine_partials,
          "paged_attention": decoding.paged_attention, "flash_decode_triton": kernels.flash_decode_triton}


@pytest.mark.parametrize("name", NAMES)
def test_labkit_passes(name, capsys):
    if name == "flash_decode_triton" and not device.HAS_TRITON:
        pytest.skip(device.TRITON_MISSING)
    getattr(check, name)(LABKIT[name])
    n = len(CHECKERS[name]().cases)
    assert capsys.readouterr().out.strip() == f"✔ {name}: {n}/{n} cases passed"
