"""labkit.kernels.guard: an interpreted kernel's stray access is refused before it happens, and named.

Without the guard, the unmasked stores below write into the Python process's heap ("free(): invalid
next size", the process aborts); the subprocess test shows a check of one survives and names it.
"""
import subprocess
import sys
import textwrap

import pytest
import torch

from labkit import device
from labkit.check.kernel_runs import on_course_device
from labkit.kernels.guard import HINTS, KernelMemoryError, fresh_memory_is_nan, memory_fault

pytestmark = pytest.mark.skipif(not (device.HAS_TRITON and device.INTERPRET), reason="the guard watches the interpreter")

if device.HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def copy_kernel(y_ptr, x_ptr, n, shift, BLOCK: tl.constexpr, MASK_LOAD: tl.constexpr, MASK_STORE: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        inside = offs < n
        x = tl.load(x_ptr + offs + shift, mask=inside if MASK_LOAD else None)
        tl.store(y_ptr + offs, x, mask=inside if MASK_STORE else None)

    @triton.jit
    def count_kernel(c_ptr, n, BLOCK: tl.constexpr):
        offs = tl.arange(0, BLOCK)
        tl.atomic_add(c_ptr + offs, 1, mask=offs < n + 1)  # one lane too many


def launch(n=10, block=8, shift=0, mask_load=True, mask_store=True, y=None):
    x = torch.arange(n, dtype=torch.float32)
    y = torch.full((n,), -7.0) if y is None else y
    copy_kernel[(triton.cdiv(n, block),)](y, x, n, shift, BLOCK=block, MASK_LOAD=mask_load, MASK_STORE=mask_store)
    return y


def raised(**kwargs) -> str:
    with pytest.raises(Exception) as err:
        launch(**kwargs)
    cause = err.value
    while cause is not None and not isinstance(cause, KernelMemoryError):
        cause = cause.__cause__
    assert cause is not None, f"not a KernelMemoryError: {err.value!r}"
    return str(cause)


@pytest.mark.parametrize("n, block", [(1, 8), (10, 8), (16, 16), (100, 64)])
def test_masked_accesses_are_left_alone(n, block):
    assert torch.equal(launch(n, block), torch.arange(n, dtype=torch.float32))


@pytest.mark.parametrize("n, block, stray", [(1, 8, 7), (10, 8, 6), (100, 64, 28)])
def test_an_unmasked_store_is_refused_before_any_lane_is_written(n, block, stray):
    y = torch.full((n,), -7.0)
    text = raised(n=n, block=block, mask_store=False, y=y)
    assert text.startswith("store outside the kernel's tensors (every lane active) in copy_kernel")
    assert f"program ({n // block}, 0, 0)" in text and f"{stray} of {block} active lanes" in text
    assert f"the highest at element {(n // block + 1) * block - 1} of y_ptr, which has {n}" in text
    assert "tl.store(y_ptr + offs, x, mask=inside if MASK_STORE else None)" in text  # the line itself
    last = (n // block) * block
    assert torch.equal(y[last:], torch.full((n - last,), -7.0)), "the refused program stored some lanes"


def test_an_unmasked_load_is_refused_and_located():
    text = raised(n=10, block=8, mask_load=False)
    assert text.startswith("load outside the kernel's tensors (every lane active)")
    assert "the highest at element 15 of x_ptr, which has 10" in text


@pytest.mark.parametrize("shift", [16, -10 ** 6])
def test_a_block_in_no_tensor_is_a_wrong_offset_not_a_missing_mask(shift):
    """Not one lane inside any tensor: which tensor lies nearest is the allocator's doing, so the verdict says
    only that (the same words past the end as before the start, on every run)."""
    text = raised(n=10, block=8, shift=shift)  # program 0 loads x[16..23], or 4 MB before x
    assert text.startswith("load outside the kernel's tensors (no lane in any tensor)")
    hint = memory_fault("KernelMemoryError: " + text)[1]
    assert hint.startswith("no lane of this block lies inside any of the kernel's tensors") and "negative" in hint


def test_a_load_before_the_start_is_named_by_a_negative_element():
    text = raised(n=10, block=8, shift=-3)
    assert text.startswith("load outside the kernel's tensors (before the start)")
    assert "the lowest at element -3 of x_ptr" in text


def test_a_view_is_its_own_extent_not_its_storage():
    base = torch.full((16,), -7.0)
    with pytest.raises(Exception, match="element 15 of y_ptr, which has 10"):
        launch(n=10, block=8, mask_store=False, y=base[:10])  # lanes 10..15 lie in the storage, not in y
    assert torch.equal(base[8:], torch.full((8,), -7.0))


def test_lanes_that_run_from_one_tensor_into_another_are_refused_and_the_other_is_named():
    """One block of pointers derives from one base: a store running past y into x (one buffer) is stray."""
    buf = torch.zeros(20)
    y, x = buf[:10], buf[10:]
    x.copy_(torch.arange(10.0))
    with pytest.raises(Exception, match=r"6 of 8 active lanes fall outside y_ptr; the highest at element 15 of "
                                        r"y_ptr, which has 10 \(that address lies inside x_ptr\)"):
        copy_kernel[(2,)](y, x, 10, 0, BLOCK=8, MASK_LOAD=True, MASK_STORE=False)
    assert torch.equal(x, torch.arange(10.0)), "x was overwritten"


def test_an_atomic_past_the_end_is_refused():
    c = torch.zeros(4, dtype=torch.int32)
    with pytest.raises(Exception, match=r"atomic outside the kernel's tensors \(past its mask\) .* element 4 of c_ptr, which has 4"):
        count_kernel[(1,)](c, 4, BLOCK=8)
    assert torch.equal(c, torch.zeros(4, dtype=torch.int32))


def test_memory_fault_reads_what_was_seen_and_gives_its_hint():
    seen = "store outside the kernel's tensors (past its mask) in k, program (0, 0, 0)"
    assert memory_fault("KernelMemoryError: " + seen) == (seen, HINTS["store", "past its mask"])
    assert memory_fault("KernelMemoryError: varies: two runs")[1] == HINTS["varies", ""]
    assert memory_fault("ValueError: store outside the kernel's tensors (past its mask)") is None
    assert memory_fault("KernelMemoryError: store outside something else") is None


def test_every_hint_names_only_what_its_evidence_allows():
    """A stray lane says where a pointer went, not why: past the end, the hint offers the mask and the offset;
    before the start, only the offset (a mask cannot bring a negative offset back)."""
    for (kind, seen), hint in HINTS.items():
        if seen in ("every lane active", "past its mask"):
            assert "mask" in hint and "offset is wrong" in hint and "allocation" in hint, kind
        elif seen == "no lane in any tensor":
            assert "a mask is not the fix" in hint and "allocation" in hint and "negative" in hint
        elif seen == "before the start":
            assert "offset is negative" in hint and "no mask can fix" in hint


def test_fresh_memory_is_nan_only_inside_the_block():
    was = torch.utils.deterministic.fill_uninitialized_memory, torch.are_deterministic_algorithms_enabled()
    with fresh_memory_is_nan():
        assert torch.empty(5).isnan().all() and (torch.empty(3, dtype=torch.int32) == 2**31 - 1).all()
    assert (torch.utils.deterministic.fill_uninitialized_memory, torch.are_deterministic_algorithms_enabled()) == was


def test_an_output_element_never_stored_is_nan_under_the_checker():
    def store_half(x):
        y = torch.empty_like(x)
        copy_kernel[(1,)](y, x, x.numel() // 2, 0, BLOCK=8, MASK_LOAD=True, MASK_STORE=True)
        return y
    y = on_course_device(store_half)(torch.arange(8.0))
    assert torch.equal(y[:4], torch.arange(4.0)) and y[4:].isnan().all()


def test_results_that_vary_between_runs_are_named_when_compiled(monkeypatch):
    monkeypatch.setattr(device, "INTERPRET", False)  # compiled: no guard, so the checker runs twice
    with pytest.raises(KernelMemoryError, match="^varies"):
        on_course_device(lambda x: torch.rand_like(x))(torch.zeros(4))
    assert torch.equal(on_course_device(lambda x: x * 2)(torch.ones(3)), torch.full((3,), 2.0))


UNMASKED = textwrap.dedent('''
    from labkit import device, check
    import torch, triton, triton.language as tl

    @triton.jit
    def softmax_kernel(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=-float("inf"))
        e = tl.exp(x - tl.max(x, axis=0))
        tl.store(y_ptr + row * y_row_stride + offs, e / tl.sum(e, axis=0))  # no mask

    def softmax_triton(x):
        y = torch.empty_like(x)
        softmax_kernel[(x.shape[0],)](y, x, x.stride(0), y.stride(0), x.shape[1],
                                      BLOCK=triton.next_power_of_2(x.shape[1]))
        return y

    for attempt in range(3):
        try:
            check.softmax_triton(softmax_triton)
        except AssertionError as err:
            print(err)
    print("the process survived")
''')


def test_checking_an_unmasked_store_kernel_names_it_and_the_process_survives(tmp_path):
    (tmp_path / "student.py").write_text(UNMASKED)
    run = subprocess.run([sys.executable, str(tmp_path / "student.py")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("hint: " + HINTS["store", "every lane active"]) == 3, run.stdout
    assert "line 11: tl.store(y_ptr + row * y_row_stride + offs, e / tl.sum(e, axis=0))" in run.stdout
    assert run.stdout.rstrip().endswith("the process survived")
