"""labkit.check's engine: the tolerance table, assert_close, and Checker (cases, probes, the short failure).

The softmax checkers are tested in tests/test_check_softmax.py, the others in tests/test_check_<topic>.py.
"""
import math

import numpy as np
import pytest
import torch

import labkit  # noqa: F401  (turns on the Triton interpreter without CUDA)
from labkit import check, device
from labkit.check.core import Case, Checker, CheckFailed, Probe
from labkit.check import kernel_runs
from labkit.check.tolerance import assert_close

# ------------------------------------------------------------------ assert_close


def test_tolerance_table_covers_the_course_dtypes():
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        tol = check.tolerance(dtype)
        assert 0 < tol.atol < 0.1 and 0 < tol.rtol < 0.1
    assert check.tolerance(torch.float64).rtol < check.tolerance(torch.float32).rtol \
        < check.tolerance(torch.float16).rtol
    import numpy as np
    assert check.tolerance(np.float64) == check.tolerance(torch.float64)
    with pytest.raises(ValueError, match="no tolerance"):
        check.tolerance(torch.int32)


def test_assert_close_accepts_rounding_and_rejects_real_errors():
    x = torch.randn(10, dtype=torch.float64)
    assert_close(x.float(), x)  # float32 rounding is within the float32 tolerance
    with pytest.raises(AssertionError, match=r"worst error 0\.01 at index \(3,\)"):
        y = x.clone()
        y[3] += 0.01
        assert_close(y.float(), x)
    with pytest.raises(AssertionError, match="shape"):
        assert_close(x[:5], x)


def test_assert_close_nan_and_inf_must_sit_where_the_reference_has_them():
    ref = torch.tensor([1.0, math.nan, math.inf])
    assert_close(ref.clone(), ref)
    with pytest.raises(AssertionError, match="worst error 1"):  # a NaN elsewhere hides nothing
        assert_close(torch.tensor([2.0, math.nan, math.inf]), ref)
    with pytest.raises(AssertionError, match="NaN mismatch at index"):
        assert_close(torch.tensor([math.nan, math.nan, math.inf]), ref)
    with pytest.raises(AssertionError, match="infinity mismatch"):
        assert_close(torch.tensor([1.0, math.nan, -math.inf]), ref)


def test_assert_close_low_precision_rule_is_relative_to_the_plain_computation():
    x = torch.randn(64, 64, dtype=torch.float64)
    ref = x @ x
    plain = (x.half() @ x.half())
    assert_close(plain, ref, baseline=plain)
    worse = plain + 0.5  # far more than 2x the plain fp16 error
    with pytest.raises(AssertionError, match="2 x the plain float16 error"):
        assert_close(worse, ref, baseline=plain)


# ------------------------------------------------------------------ the Checker engine


def _double(x):
    return 2 * x


def _doubling(probes=()) -> Checker:
    """A tiny checker: two cases, the second with a case hint, and the given probes."""
    return Checker("double", [Case("three values", (torch.tensor([1.0, 2.0, 3.0]),), hint="each value doubled"),
                              Case("one value", (torch.tensor([5.0]),), hint="look at the one-element case")],
                   _double, list(probes))


def _probe(hint, violated, x=torch.tensor([0.0, 1.0])):
    return Probe("probe", (x,), {}, hint, violated)


ADDED_2 = _probe("you added 2 instead of doubling", lambda o, p: torch.equal(o.value, p.args[0] + 2) and "f(0) = 2")
SQUARED = _probe("you squared instead of doubling", lambda o, p: torch.equal(o.value, p.args[0] ** 2))


def _failure(checker, fn) -> CheckFailed:
    with pytest.raises(CheckFailed) as info:
        checker.check(fn)
    return info.value


def test_checker_prints_the_fixed_pass_line(capsys):
    _doubling([ADDED_2]).check(lambda x: x * 2)
    assert capsys.readouterr().out == "✔ double: 2/2 cases passed\n"


def test_blank_exercise_says_not_implemented_yet(capsys):
    def blank(x):
        raise NotImplementedError("Exercise 0.1: double x")
    _doubling([ADDED_2]).check(blank)
    assert "✘ double: not implemented yet" in capsys.readouterr().out


def test_failure_names_case_inputs_error_and_the_probe_hint_with_what_it_saw():
    err = _failure(_doubling([ADDED_2]), lambda x: x + 2)
    text = str(err)
    assert "case 1/2 (three values) failed" in text and "tensor(3,) float32" in text and "worst error" in text
    assert err.hint == "you added 2 instead of doubling (seen: f(0) = 2)" and text.endswith("hint: " + err.hint)


def test_probes_are_examined_in_order_and_the_first_violated_one_wins():
    always = _probe("the first property", lambda o, p: True)
    assert _failure(_doubling([SQUARED, always, ADDED_2]), lambda x: x + 2).hint == "the first property"
    assert _failure(_doubling([SQUARED, ADDED_2, always]), lambda x: x + 2).hint.startswith("you added 2")
    assert _failure(_doubling([SQUARED, ADDED_2]), lambda x: x * x).hint == "you squared instead of doubling"


def test_case_hint_is_used_when_no_probe_fires():
    err = _failure(_doubling([ADDED_2, SQUARED]), lambda x: 2 * x if x.numel() > 1 else x)
    assert "case 2/2 (one value)" in str(err) and err.hint == "look at the one-element case"


def test_a_probe_that_cannot_read_the_output_is_skipped():
    broken = _probe("never said", lambda o, p: o.value.no_such_attribute)
    assert _failure(_doubling([broken, ADDED_2]), lambda x: x + 2).hint.startswith("you added 2")


def test_modifying_the_input_in_place_is_reported():
    err = _failure(_doubling(), lambda x: x.mul_(2))
    assert "modified its input in place" in str(err) and "copy" in err.hint


def test_a_wrong_dtype_is_named_before_the_values():
    err = _failure(_doubling([ADDED_2]), lambda x: (2 * x).double())
    assert "dtype torch.float64, expected torch.float32" in str(err) and "dtype" in err.hint


def test_a_raised_error_shows_only_the_students_frames():
    def crash(x):
        return x.reshape(2, 2) * 2
    err = _failure(_doubling(), crash)
    text = str(err)
    assert "your function raised RuntimeError" in text and "in crash" in text and "x.reshape(2, 2)" in text
    assert "labkit/check" not in text and "torch/" not in text


def test_the_notebook_shows_a_few_lines_with_the_hint_and_no_checker_source():
    lines = _failure(_doubling([ADDED_2]), lambda x: x + 2)._render_traceback_()
    text = "\n".join(lines)
    assert len(lines) <= 6 and lines[-1].strip().startswith("hint:")
    assert "labkit/check" not in text and "lambda" not in text and "Traceback" not in text


def test_checker_demands_a_function():
    with pytest.raises(TypeError, match=r"check.naive_softmax\(naive_softmax\)"):
        check.naive_softmax(torch.zeros(3))


def test_on_course_device_moves_arguments_there_and_results_back(monkeypatch):
    seen = []

    def kernel_wrapper(x, scale=None):
        seen.append((x.device.type, scale.device.type))
        return x * scale, x
    monkeypatch.setattr(device, "DEVICE", torch.device("meta"))  # stands in for "cuda"
    moved = kernel_runs.on_course_device(kernel_wrapper)
    with pytest.raises(NotImplementedError):  # meta tensors cannot come back: proves they went
        moved(torch.ones(2), scale=torch.ones(2))
    assert seen == [("meta", "meta")]
    monkeypatch.setattr(device, "DEVICE", torch.device("cpu"))
    out = kernel_runs.on_course_device(kernel_wrapper)(torch.ones(2), scale=torch.full((2,), 3.0))
    assert isinstance(out, tuple) and out[0].tolist() == [3.0, 3.0]
    with pytest.raises(TypeError, match=r"check.softmax_triton\(softmax_triton\)"):
        check.softmax_triton(42)  # not a function: said before anything moves to the device


def test_on_course_device_switches_off_the_interpreters_numpy_warnings():
    """The interpreter runs kernels on numpy: an overflow on a probe must not warn, or, where warnings
    are errors (python -W error), become the student's exception instead of the checker's verdict."""
    import warnings


    def overflowing_kernel(x):
        return torch.from_numpy(np.exp(x.numpy() * np.float32(1000)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = kernel_runs.on_course_device(overflowing_kernel)(torch.ones(2))
        with pytest.raises(RuntimeWarning, match="overflow"):
            overflowing_kernel(torch.ones(2))
    assert torch.isinf(out).all()


def test_a_state_in_a_list_modified_in_place_is_caught():
    from labkit.check.core import evaluate
    from labkit.softmax import OnlineState
    states = [OnlineState(torch.zeros(2), torch.ones(2)), OnlineState(torch.ones(2), torch.ones(2))]

    def rescale_in_place(states):
        states[1].d.mul_(2.0)
        return states[1]
    assert evaluate(rescale_in_place, (states,), {}).modified
    assert not evaluate(lambda s: s[0], (states,), {}).modified


def test_another_seed_draws_other_random_inputs(monkeypatch):
    """`labkit grade --seed S` moves every random input of the checkers (LABKIT_CHECK_SEED)."""
    from labkit.check.core import CHECKERS, SEED_ENV

    def flat(name):
        return [a for args, kwargs in CHECKERS[name]().inputs() for a in (*args, *kwargs.values())]

    def same(a, b):
        if isinstance(a, torch.Tensor):
            return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a.nan_to_num(), b.nan_to_num())
        if isinstance(a, np.ndarray):
            return isinstance(b, np.ndarray) and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
        return True
    for name in ("safe_softmax", "naive_attention", "flash_attention_backward", "lu_factor", "gauss_seidel",
                 "red_black_sweep", "flash_attention_forward_triton", "softmax_jacobian"):
        usual = flat(name)
        monkeypatch.setenv(SEED_ENV, "7")
        moved = flat(name)
        monkeypatch.delenv(SEED_ENV)
        assert len(usual) == len(moved) and not all(same(a, b) for a, b in zip(usual, moved)), name


def test_the_check_cell_says_what_the_grader_says_about_reuse(tmp_path):
    """In a notebook, check.<name>(fn) runs labkit grade's static reuse check on the cells run so far:
    a function that calls what it must re-implement is told so, not passed."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from labkit.grading.job import execute_notebook
    nb = new_notebook(cells=[
        new_code_cell("import labkit, torch\nfrom labkit import check"),
        new_code_cell("def helper(x, dim):\n    return torch.softmax(x, dim)"),
        new_code_cell("def safe_softmax(x, dim=-1):\n    return helper(x, dim)"),
        new_code_cell("check.safe_softmax(safe_softmax)"),
        new_code_cell("def safe_softmax(x, dim=-1):\n    e = (x - x.amax(dim, keepdim=True)).exp()\n"
                      "    return e / e.sum(dim, keepdim=True)"),
        new_code_cell("check.safe_softmax(safe_softmax)")])
    run = execute_notebook(nbformat.from_dict(nb), tmp_path, timeout=120, errors_only=False)
    told = [o for o in run.nb.cells[3].outputs if o.output_type == "error"]
    assert told and "uses torch.softmax, which this exercise re-implements" in told[0].evalue
    passed = "".join(o.get("text", "") for o in run.nb.cells[5].outputs)
    assert "✔ safe_softmax:" in passed, run.nb.cells[5].outputs
