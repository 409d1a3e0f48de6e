"""Check that every wrong answer of wrong_answers_decoding differs from labkit's reference on its witness.

Run from the repository root: ``python tests/verify_decoding.py``. One line per answer; exit status 0 only if
every answer differs (in value beyond a tight tolerance, shape, dtype or type) and the unedited notebook cell
agrees with the reference on every Triton witness (a control: the witnesses and the cell template are sound).
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import labkit  # noqa: E402,F401  (first: picks the GPU or Triton's interpreter)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from labkit import decoding, device  # noqa: E402

RTOL, ATOL = 1e-5, 1e-5


def references():
    refs = {"kv_cache_bytes": decoding.kv_cache_bytes, "combine_partials": decoding.combine_partials,
            "paged_attention": decoding.paged_attention}
    if device.HAS_TRITON:
        from labkit.kernels.decoding import flash_decode_triton
        refs["flash_decode_triton"] = flash_decode_triton
    return refs


def difference(got, want, path="result") -> str | None:
    """How ``got`` differs from ``want`` (None: the same within the tolerance)."""
    if type(got) is not type(want) and not (isinstance(got, tuple) and isinstance(want, tuple)):
        return f"{path}: type {type(got).__name__} vs {type(want).__name__}"
    if isinstance(want, tuple):
        if len(got) != len(want):
            return f"{path}: {len(got)} items vs {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            d = difference(g, w, f"{path}[{i}]")
            if d:
                return d
        return None
    if isinstance(want, torch.Tensor):
        if got.shape != want.shape:
            return f"{path}: shape {tuple(got.shape)} vs {tuple(want.shape)}"
        if got.dtype != want.dtype:
            return f"{path}: dtype {got.dtype} vs {want.dtype}"
        g, w = got.detach().cpu().double(), want.detach().cpu().double()
        if not torch.allclose(g, w, rtol=RTOL, atol=ATOL, equal_nan=True):
            bad = ~torch.isclose(g, w, rtol=RTOL, atol=ATOL, equal_nan=True)
            gap = (g - w).abs()[bad & torch.isfinite(g) & torch.isfinite(w)]
            worst = f"max gap {gap.max().item():.3g}" if gap.numel() else "non-finite values"
            return f"{path}: {int(bad.sum())}/{bad.numel()} values differ, {worst}"
        return None
    return None if got == want else f"{path}: {got!r} vs {want!r}"


def main() -> int:
    import wrong_answers_decoding as wa

    refs = references()
    failures = 0
    counts: dict[str, int] = {}
    for i, (wrong, witness) in enumerate(zip(wa.WRONG, wa.WITNESS)):
        counts[wrong.exercise] = counts.get(wrong.exercise, 0) + 1
        args, kwargs = witness()
        with np.errstate(all="ignore"):
            want = refs[wrong.exercise](*args, **kwargs)
            args, kwargs = witness()  # fresh inputs: an answer must not see what the reference did to them
            try:
                got = wrong.fn(*args, **kwargs)
                d = difference(got, want)
            except Exception as err:  # noqa: BLE001 - a raise is no wrong value: the witness should avoid it
                d = None
                print(f"FAIL {i:2d} {wrong.exercise:20s} {wrong.mistake}: raised {type(err).__name__}: {err}")
                failures += 1
                continue
        if d is None:
            failures += 1
            print(f"FAIL {i:2d} {wrong.exercise:20s} {wrong.mistake}: same as the reference")
        else:
            print(f"ok   {i:2d} {wrong.exercise:20s} {wrong.mistake}: {d}")

    if device.HAS_TRITON:  # control: the unedited cell agrees with labkit on every Triton witness
        solution = wa._notebook_cell(wa.SOLUTION)
        for i, (wrong, witness) in enumerate(zip(wa.WRONG, wa.WITNESS)):
            if wrong.exercise != "flash_decode_triton":
                continue
            args, kwargs = witness()
            with np.errstate(all="ignore"):
                d = difference(solution(*args, **kwargs), refs["flash_decode_triton"](*args, **kwargs))
            if d is not None:
                failures += 1
                print(f"FAIL control: the notebook's solution differs from labkit on witness {i}: {d}")
        print("control: the unedited cell matches labkit on the Triton witnesses"
              if not failures else "control: see above")

    print(f"{len(wa.WRONG) - failures if failures <= len(wa.WRONG) else 0}/{len(wa.WRONG)} wrong answers differ; "
          + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
