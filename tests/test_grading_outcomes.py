"""Tests for labkit.grading.outcomes and .harvest: outcomes survive torch.save /
torch.load(weights_only=True) exactly, anything else is refused (tensors checked before any
arithmetic), and the harvest records missing, blank and working functions."""
from __future__ import annotations

import collections
import pickle

import numpy as np
import pytest
import torch

from labkit.check import core
from labkit.grading import harvest
from labkit.grading import outcomes as oc

Pair = collections.namedtuple("Pair", ["m", "d"])


class Weird:
    pass


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return type(b) is torch.Tensor and a.dtype == b.dtype and a.shape == b.shape and \
            torch.equal(a.nan_to_num(), b.nan_to_num())
    if isinstance(a, np.ndarray):
        return type(b) is np.ndarray and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, np.generic):
        return type(b) is type(a) and (a == b or (a != a and b != b))
    if isinstance(a, tuple) and hasattr(a, "_fields"):
        return a._fields == b._fields and all(_same(x, y) for x, y in zip(a, b)) and b.m is b[0]
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return type(b) is dict and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


VALUES = [
    None, True, 3, -2.5, float("inf"), "text ✔", 1 + 2j,
    torch.randn(3, 5), torch.tensor([1.0, float("nan")], dtype=torch.float16), torch.arange(6).view(2, 3).t(),
    torch.zeros(0, 4, dtype=torch.bfloat16), torch.tensor(True), torch.randn(2, requires_grad=True) * 2,
    np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2], np.array([1, 2], dtype=">i4"), np.eye(3),
    np.array([1 + 1j], dtype=np.complex64), np.float64(0.5), np.int32(7), np.array(2.0),
    (torch.ones(2), np.zeros(2)), [1, [2, (3,)]], Pair(torch.ones(3), torch.zeros(3)), {"a": [1, 2]},
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_values_survive_a_safe_round_trip(value, tmp_path):
    expected = value.detach() if isinstance(value, torch.Tensor) else value
    torch.save({"v": oc.encode(value)}, tmp_path / "v.pt")
    back = oc.decode(torch.load(tmp_path / "v.pt", weights_only=True)["v"])
    assert _same(expected, back), (expected, back)


def test_other_types_become_an_unsupported_marker_that_fails_the_judgement(tmp_path):
    for value, name in [(Weird(), "Weird"), (np.array(["a"]), "numpy <U1"), ({1: 2}, "dict"),
                        (torch.ones(2).to_sparse(), "layout"), (lambda x: x, "function")]:
        back = oc.decode(oc.encode(value))
        assert isinstance(back, oc.Unsupported) and name in back.type_name
    with pytest.raises(AssertionError):
        core.compare_outputs(oc.Unsupported("Weird"), torch.ones(2))
    deep = []
    for _ in range(40):
        deep = [deep]
    assert "too deep" in repr(oc.decode(oc.encode(deep)))  # a marker, not a RecursionError


def _read(folder, name):
    return oc.load_outcomes((folder / oc.outcomes_name(name)).read_bytes(), name)


def test_outcomes_files_round_trip_and_arbitrary_pickles_are_refused(tmp_path):
    o = core.Outcome(value=Pair(np.ones(2), torch.ones(2)), calls=[torch.ones(1), (1, 2)], modified=True)
    oc.save_outcomes(tmp_path, "merge_states", [o, core.Outcome(not_implemented=True),
                                                core.Outcome(error="ValueError: no", frames="line 1", timed_out=True)])
    got, note = _read(tmp_path, "merge_states")
    assert note == "" and len(got) == 3 and got[0].modified and got[1].not_implemented and got[2].timed_out
    assert _same(o.value, got[0].value) and _same(o.calls, got[0].calls) and got[2].error == "ValueError: no"
    oc.save_outcomes(tmp_path, "lu_factor", None, "no function named lu_factor")
    assert _read(tmp_path, "lu_factor") == (None, "no function named lu_factor")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"format": oc.FORMAT, "name": "evil", "outcomes": [Evil()]}, protocol=2))
    torch.save({"format": oc.FORMAT, "name": "fake", "note": "", "outcomes": [{"value": 1}]}, tmp_path / "fake.pt")
    torch.save({"format": oc.FORMAT, "name": "other", "note": "", "outcomes": []}, tmp_path / "wrong.pt")
    for name in ("evil", "fake", "wrong"):
        with pytest.raises(oc.MalformedOutcomes):
            _read(tmp_path, name)
    with pytest.raises(oc.MalformedOutcomes, match="larger than"):
        oc.load_outcomes(b"x" * (oc.MAX_FILE + 1), "big")
    with pytest.raises(ValueError):
        oc.outcomes_name("../x")


def test_saving_replaces_a_link_left_at_the_path_instead_of_following_it(tmp_path):
    target = tmp_path / "outside.txt"
    target.write_text("canary")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "double.pt").symlink_to(target)
    oc.save_outcomes(tmp_path / "out", "double", None, "x")
    assert target.read_text() == "canary" and not (tmp_path / "out" / "double.pt").is_symlink()


def _file_with(value) -> bytes:
    import io
    buffer = io.BytesIO()
    torch.save({"format": oc.FORMAT, "name": "t", "note": "", "outcomes": [
        {"value": value, "error": "", "frames": "", "not_implemented": False, "modified": False, "calls": [],
         "timed_out": False}]}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("tensor, reason", [
    (torch.zeros(1).expand(1 << 25), "more than"),  # 4 bytes that a copy would make 128 MiB
    (torch.zeros(8)[::2], "does not match its storage"),  # a view: only what encode writes is accepted
    (torch.zeros(4)[1:], "does not match its storage"),
    (torch.zeros(2, dtype=torch.float8_e4m3fn), "dtype"),
    (torch.zeros(3).as_strided((2, 2), (0, 1)), "does not match its storage"),
])
def test_tensors_are_checked_before_any_arithmetic(tensor, reason):
    with pytest.raises(oc.MalformedOutcomes, match=reason):
        oc.load_outcomes(_file_with({"tensor": tensor}), "t")


def test_an_array_must_fit_its_bytes():
    raw = torch.zeros(16, dtype=torch.uint8)
    with pytest.raises(oc.MalformedOutcomes, match="does not fit"):
        oc.load_outcomes(_file_with({"ndarray": raw, "dtype": "<f8", "shape": [1 << 20], "scalar": False}), "t")
    got, _ = oc.load_outcomes(_file_with({"ndarray": raw, "dtype": "<f8", "shape": [2], "scalar": False}), "t")
    assert got[0].value.shape == (2,)


def test_the_harvest_records_each_exercise_for_the_grader_to_judge(tmp_path):
    def safe_softmax(x, dim=-1):
        return torch.softmax(x, dim)

    def logsumexp(x, dim=-1):
        raise NotImplementedError("Exercise 2.2")
    harvest.harvest({"safe_softmax": "safe_softmax", "logsumexp": "logsumexp", "naive_softmax": "naive_softmax",
                     "no_such_checker": "f"}, {"safe_softmax": safe_softmax, "logsumexp": logsumexp, "f": abs}, tmp_path)
    assert _read(tmp_path, "no_such_checker")[1].startswith("not graded: the checker no_such_checker did not load")
    checker = core.CHECKERS["safe_softmax"]()
    got, _ = _read(tmp_path, "safe_softmax")
    assert oc.judge_outcomes(checker, got).status == "passed"
    got, _ = _read(tmp_path, "logsumexp")
    assert oc.judge_outcomes(core.CHECKERS["logsumexp"](), got).status == "not implemented"
    assert _read(tmp_path, "naive_softmax") == (None, "no function named naive_softmax in the notebook")
    with pytest.raises(oc.MalformedOutcomes):
        oc.judge_outcomes(checker, got[:1])


def test_a_file_of_countless_tiny_outcomes_is_refused_before_unpickling():
    import io
    import time
    buffer = io.BytesIO()
    torch.save({"format": oc.FORMAT, "name": "t", "note": "", "outcomes": [{"value": i} for i in range(300_000)]},
               buffer)
    start = time.monotonic()
    with pytest.raises(oc.MalformedOutcomes, match="more than 200000 pickled objects"):
        oc.load_outcomes(buffer.getvalue(), "t")
    assert time.monotonic() - start < 5


def test_the_harvest_keeps_the_installation_and_pythonpath_even_under_tmp_and_drops_what_a_cell_added(tmp_path):
    """CI clones the course under a temporary folder: the harvest's clean-up of sys.path must keep the
    venv and the grader's PYTHONPATH there, and drop a folder a cell put first."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    mods, planted = tmp_path / "mods", tmp_path / "planted"
    mods.mkdir()
    (planted / "tiny_checkers").mkdir(parents=True)
    (planted / "tiny_checkers" / "__init__.py").write_text("raise SystemExit('planted')")
    shutil.copy(Path(__file__).with_name("tiny_checkers.py"), mods)
    env = {**__import__("os").environ, "PYTHONPATH": str(mods)}
    cell = subprocess.run([sys.executable, "-c", "from labkit.grading.harvest import harvest_cell; print(harvest_cell("
                           "{'double': 'double'}, 'out', 10, ('labkit.check', 'tiny_checkers')))"],
                          env=env, capture_output=True, text=True, check=True).stdout
    script = (f"import sys\nsys.path.insert(0, {str(planted)!r})\ndef double(x):\n    return 2 * x\n{cell}\n"
              f"print({str(mods)!r} in sys.path, {str(planted)!r} in sys.path)")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "False"]
    got, _ = oc.load_outcomes((tmp_path / "out" / "double.pt").read_bytes(), "double")
    assert [o.value for o in got] == [6.0, -3.0, 0.0]
