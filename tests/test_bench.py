"""Tests for labkit.bench (timing, memory, tables, result files, CLI) and the softmax suite at a tiny size."""
import sys
import time

import pytest
import torch

import labkit  # noqa: F401  (first: TRITON_INTERPRET on CPU)
from labkit import bench, device
from labkit.__main__ import main as labkit_main

TINY = ["--widths", "64,128", "--rows", "4", "--rep", "1"]


def test_time_fn_returns_positive_median():
    assert bench.time_fn(lambda: sum(range(1000)), warmup=1, rep=5) > 0
    sleeps = iter([0.03, 0.001, 0.001, 0.03, 0.03])  # median 0.03; mean 0.018, min 0.001
    assert bench.time_fn(lambda: time.sleep(next(sleeps)), warmup=0, rep=5) >= 0.03


def test_time_fn_runs_warmup_and_rep_calls():
    calls = []
    bench.time_fn(lambda: calls.append(1), warmup=2, rep=3)
    assert len(calls) == 5


@pytest.mark.parametrize("warmup, rep", [(-1, 3), (0, 0)])
def test_time_fn_bad_counts(warmup, rep):
    with pytest.raises(ValueError, match="warmup"):
        bench.time_fn(lambda: None, warmup=warmup, rep=rep)


def test_peak_memory_sees_an_allocation():
    peak = bench.peak_memory(lambda: torch.ones(16 * 2**20, device=device.DEVICE).sum())  # 64 MiB
    if sys.platform.startswith("linux") or device.HAS_CUDA:
        assert peak is not None and peak >= 48 * 2**20
    else:
        assert peak is None or peak >= 48 * 2**20


def test_print_table(capsys):
    text = bench.print_table("Title", ["n", "GB/s", "note"], [[64, 1234.5, None], [128, 0.012345, "x"]])
    assert text == capsys.readouterr().out.rstrip("\n")
    lines = text.splitlines()
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]]
    assert lines[0] == "Title" and cells[0] == ["n", "GB/s", "note"]
    assert cells[2] == ["64", "1234", "–"] and cells[3] == ["128", "0.0123", "x"]
    assert len({len(line) for line in lines[2:]}) == 1  # aligned columns
    with pytest.raises(ValueError, match="cells"):
        bench.print_table("t", ["a", "b"], [[1]])


def test_save_results(tmp_path):
    path = bench.save_results("softmax", "the table", directory=tmp_path, command="cmd --x")
    assert path.parent == tmp_path and path.name.startswith("softmax-") and path.suffix == ".md"
    text = path.read_text()
    for needle in ("- date: ", "- hardware: ", f"torch {torch.__version__}", "- command: cmd --x",
                   "the table"):
        assert needle in text
    assert ("cpu" in path.name) == (not device.HAS_CUDA)


def test_softmax_suite_at_a_tiny_size(capsys):
    assert bench.main(["softmax", *TINY]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| width"))
    assert "torch.softmax" in header and "softmax_triton" in header and "online_softmax_triton" in header
    rows = [line for line in out.splitlines() if line.startswith(("|    64 ", "|   128 "))]
    assert len(rows) == 2
    assert "wrong" not in out and "–" not in "".join(rows)  # every provider measured and correct


def test_softmax_suite_through_python_m_labkit(capsys):
    assert labkit_main(["bench", "softmax", *TINY, "--dtype", "float16"]) == 0
    assert "float16" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["nosuch"], ["softmax", "--widths", "0,x"], ["softmax", "--bogus"]])
def test_bad_command_lines_exit_2(argv, capsys):
    assert bench.main(argv) == 2
    assert capsys.readouterr().err


def test_attention_suite_at_a_tiny_size(capsys):
    argv = ["attention", "--n", "32,64", "--bh", "1", "--d", "16", "--rep", "1", "--target-n", "128"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    rows = [line for line in lines if line.startswith("|") and line.split("|")[1].strip() in ("32", "64")]
    labels = {row.split("|")[2].strip() for row in rows}
    assert {"standard (naive_attention)", "torch SDPA", "labkit tiled_attention",
            "labkit flash (PyTorch)"} <= labels
    assert any(label.startswith("Triton kernel") for label in labels) == device.HAS_TRITON
    assert "flash-attn" in labels or "flash-attn not measured at N=32, N=64: " in out
    errors = [float(row.split("|")[-2]) for row in rows]
    assert errors and max(errors) < 1e-4  # every provider agrees with the float64 reference
    # The forward + backward table: gradients through autograd, TFLOP/s from 3.5x the forward's FLOPs.
    backward = out.split("Attention forward + backward")[1].split("CPU target")[0]
    assert "3.5 · 4 · B·H · N² · D" in backward
    bwd_rows = [line for line in backward.splitlines()
                if line.startswith("|") and line.split("|")[1].strip() in ("32", "64")]
    bwd_labels = [row.split("|")[2].strip() for row in bwd_rows]
    for label in ("standard (autograd)", "torch SDPA", "labkit flash_attention (PyTorch)"):
        assert bwd_labels.count(label) == 2  # measured at both N
    assert any(label.startswith("Triton flash_attention") for label in bwd_labels) == device.HAS_TRITON
    assert max(float(row.split("|")[-2]) for row in bwd_rows) < 1e-4  # dq, dk, dv vs float64
    target = [line for line in lines if line.startswith("|") and "ratio" not in line and
              ("SDPA" in line or "block_q" in line) and line.count("|") == 6]
    assert len(target) == 3 and "B·H=8, N=128, D=64" in out


def test_attention_suite_causal_skips_the_lab_tiling(capsys):
    assert bench.main(["attention", "--n", "40", "--bh", "1", "--d", "16", "--rep", "1", "--causal",
                       "--target-n", "0"]) == 0
    out = capsys.readouterr().out
    assert "/ 2 (causal" in out and "no causal mask" in out and "CPU target" not in out


@pytest.mark.skipif(not (device.INTERPRET and device.HAS_TRITON),
                    reason="the time budget applies to the Triton interpreter")
def test_attention_suite_keeps_the_interpreter_within_its_budget(capsys, monkeypatch):
    from labkit.bench import attention as attention_bench
    monkeypatch.setattr(attention_bench, "INTERPRETER_BUDGET_S", 0.0)
    assert bench.main(["attention", "--n", "32", "--bh", "1", "--d", "16", "--rep", "1",
                       "--target-n", "0"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 32 |")]
    assert rows and not any("Triton" in row for row in rows)  # neither the forward nor the backward
    assert "Triton kernel (interpreter) not measured at N=32: the interpreter would need" in out
    assert "Triton flash_attention (interpreter) not measured at N=32: the interpreter would need" in out


def test_linsys_suite_quick(capsys):
    assert bench.main(["linsys", "--quick"]) == 0
    out = capsys.readouterr().out
    for table in ("blocked LU (labkit)", "LAPACK", "getrow", "Targets"):
        assert table in out
    targets = [line for line in out.splitlines() if line.startswith("|") and ("x |" in line or "% |" in line)]
    assert len(targets) >= 3  # LU ratio(s), sweep speed-up, SOR deviation, each with a measured value


@pytest.mark.skipif(bench.peak_memory(lambda: None) is None, reason="no peak-memory measurement here")
def test_peak_memory_fresh_sees_an_allocation_of_known_size():
    setup = "x = torch.ones(16, 2**20)"  # the input: allocated before the measurement starts
    mib = bench.peak_memory_fresh(setup, "(x * 2).sum()") / 2**20  # one temporary of 64 MiB
    assert 60 < mib < 80, mib
    none = bench.peak_memory_fresh(setup, "x.sum()") / 2**20
    assert none < 8, none  # no temporary
    # A list is measured in one process, each statement as it measures alone, in any order: no
    # temporary before and after the temporary, and the temporary again once its memory was freed
    # (the bounds are those of the single measurements: the resident size moves by a few MiB run to run)
    stmts = ["x.sum()", "(x * 2).sum()", "x.sum()", "(x * 2).sum()"]
    together = [peak / 2**20 for peak in bench.peak_memory_fresh(setup, stmts)]
    assert len(together) == 4 and together[0] < 8 and together[2] < 8, together
    assert 60 < together[1] < 80 and 60 < together[3] < 80, together


def test_progress_goes_to_stderr_on_the_command_line_and_to_stdout_in_a_notebook(monkeypatch, capsys):
    bench.progress(1, 2, "first")
    bench.progress(2, 2, "second")
    out, err = capsys.readouterr()
    assert out == "" and err.split("\n") == ["\r[1/2] first".ljust(60), "\r[2/2] second".ljust(60), ""]

    class OutStream:  # stands for ipykernel.iostream.OutStream: stderr there is a red box in JupyterLab
        __module__ = "ipykernel.iostream"

        def __init__(self):
            self.text = ""

        def write(self, text):
            self.text += text

        def flush(self):
            pass

        def isatty(self):
            return False

    kernel_out, kernel_err = OutStream(), OutStream()
    monkeypatch.setattr(sys, "stdout", kernel_out)
    monkeypatch.setattr(sys, "stderr", kernel_err)
    bench.progress(1, 5, "Python loops")
    assert (kernel_out.text, kernel_err.text) == ("\r[1/5] Python loops".ljust(60) + "\n", "")


def test_published_gpu_figures_each_carry_their_source_and_quote():
    import json
    from pathlib import Path
    data = json.loads((Path(__file__).resolve().parents[1] / "data" / "published_gpu_figures.json").read_text())
    ids = {f["id"] for f in data["figures"]}
    assert {i for topic in data["topics"].values() for i in topic} == ids  # every figure shown, none missing
    for f in data["figures"]:
        assert all(f.get(k) for k in ("label", "cite", "gpu", "unit", "source", "quote")), f["id"]
        assert f.get("url", "").startswith("https://"), f["id"]


def test_published_prints_each_topic_labelled_as_not_measured_here(capsys):
    text = bench.published("attention_forward")
    assert text.startswith("Published GPU figures, not measured here") and "FlashAttention-3" in text
    assert capsys.readouterr().out.strip() == text.strip()
    with pytest.raises(ValueError, match="no topic 'nope'"):
        bench.published("nope")
