"""labkit.bench.gpu_check on a CPU: argument handling, the CPU message, the report format."""

import pytest

from labkit import device
from labkit.__main__ import main as labkit_main
from labkit.bench import gpu_check


@pytest.mark.skipif(device.HAS_CUDA, reason="the CPU message only shows without CUDA")
def test_cpu_prints_one_line_and_exits_2(capsys, tmp_path):
    assert labkit_main(["gpu-check", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [gpu_check.NEEDS_GPU] and "CUDA GPU" in err[0]
    assert not list(tmp_path.iterdir())  # nothing written


def test_unknown_part_is_rejected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(["--skip", "everything"])
    assert exit_info.value.code == 2 and "everything" in capsys.readouterr().err


def test_report_format_on_fabricated_records():
    records = [dict(part="tests", command="python -m pytest -q t.py", rc=0, seconds=12.5, last_line="3 passed"),
               dict(part="bench-attention", command="python -m labkit bench attention", rc=124,
                    seconds=150.0, last_line="a | b"),
               dict(part="notebooks", command="python -m pytest", rc=1, seconds=3.0, last_line="1 failed")]
    text = gpu_check.format_report(records, "Fake GPU", {"torch": "0.0", "triton": "0.0"}, "2026-01-01")
    lines = text.splitlines()
    assert lines[0] == "# gpu-check, 2026-01-01" and "GPU: Fake GPU" in lines
    assert "| tests | ok | 12.5 | `python -m pytest -q t.py` | 3 passed |" in lines
    assert "| bench-attention | timeout | 150.0 | `python -m labkit bench attention` | a / b |" in lines
    assert any(line.startswith("| notebooks | FAILED (rc 1) |") for line in lines)


def test_parts_stay_within_eight_minutes():
    assert sum(limit for *_, limit in gpu_check.PARTS) <= 8 * 60


def test_attention_part_runs_the_sdpa_sweep_within_its_limit():
    (cmd, limit), = [(cmd, limit) for name, cmd, _, limit in gpu_check.PARTS if name == "bench-attention"]
    assert cmd[0] == "labkit.bench.gpu_attention" and "{out}" in cmd
    assert float(cmd[cmd.index("--budget") + 1]) + 20 <= limit  # the report is written before the kill


def test_parts_run_in_order_with_the_out_folder(monkeypatch, tmp_path, capsys):
    import torch

    calls = []

    def fake_run_part(name, args, env, limit):  # records what would run; nothing is measured
        calls.append((name, args, limit))
        return dict(part=name, command="python -m " + " ".join(args), rc=0, seconds=0.0, last_line="")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Fake GPU 80GB")
    monkeypatch.setattr(gpu_check, "run_part", fake_run_part)
    assert gpu_check.main(["--skip", "tests", "--skip", "notebooks", "--out", str(tmp_path)]) == 0
    assert [c[0] for c in calls] == ["bench-softmax", "bench-attention", "bench-decoding"]
    assert calls[1][1][-2:] == ["--out", str(tmp_path)]
    (page,) = tmp_path.glob("gpu-check-fake-gpu-80gb-*.md")
    assert "GPU: Fake GPU 80GB" in page.read_text()
