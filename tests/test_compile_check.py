"""labkit.kernels.launch and compile-check: real GPU compiles (no GPU needed) of a representative subset."""

import json

import pytest
import torch

import labkit  # noqa: F401  (device switch first)
from labkit import device
from labkit.__main__ import main as labkit_main
from labkit.kernels import compile_check, launch

pytestmark = pytest.mark.skipif(not device.HAS_TRITON, reason=device.TRITON_MISSING)

# One arch per matrix unit (fma on sm_75, mma on sm_80, wgmma on sm_90), fp16, causal, the two
# head dims that need the most shared memory; softmax at its widest fused block only.
# sm_75 has no Triton mma: its dots unroll into FMAs and take ~15-30 s to compile, so only the
# forward at D = 128 there (first, so that the two sm_75 jobs go to different workers).
SUBSET = (compile_check.jobs((75,), ("fp16",), (128,), (True,), ("forward",))
          + compile_check.jobs((80, 90), ("fp16",), (64, 128), (True,), ("forward", "dkdv", "dq"))
          + [dict(arch=90, kernel="softmax", dtype="fp16", head_dim=None, causal=None,
                  config=[32768, 0, 16, 1])])
# The T4 problem of issue 11: the old forward config at D = 128 needs 96 KiB on sm_75 (64 KiB).
OVERSIZED = dict(arch=75, kernel="forward", dtype="fp16", head_dim=128, causal=True,
                 config=[128, 64, 8, 3])


@pytest.fixture(scope="module")
def records():
    return compile_check.run_jobs([OVERSIZED] + SUBSET, workers=2)


def test_subset_compiles_fits_and_uses_tensor_cores(records):
    good = records[1:]
    assert compile_check.exit_code(good) == 0, compile_check.summary(good)
    mma = {r["arch"]: r["mma"] for r in good if r["kernel"] == "forward"}
    assert mma == {75: "fma", 80: "mma", 90: "wgmma"}
    for r in good:
        assert 0 < r["shared_bytes"] <= r["shared_limit"] == launch.ARCHS[r["arch"]].shared_limit
        assert 0 < r["registers"] <= 255 and r["spill_bytes"] == 0


def test_oversized_config_fails_the_gate(records):
    bad = records[0]
    assert bad["shared_bytes"] > 64 * 1024 and not bad["ok"] and "shared memory" in bad["error"]
    assert compile_check.exit_code(records) == 1
    assert "FAIL sm_75 forward fp16 D=128" in compile_check.summary(records)


def test_gate_rejects_spills_and_cuda_core_dots():
    rec = dict(arch=80, kernel="forward", dtype="fp16", shared_bytes=1024, shared_limit=2048,
               registers=128, spill_bytes=0, mma="mma")
    assert compile_check.problem(rec) == ""
    assert "spills" in compile_check.problem(dict(rec, spill_bytes=8))
    assert "CUDA cores" in compile_check.problem(dict(rec, mma="fma"))
    assert compile_check.problem(dict(rec, mma="fma", arch=75)) == ""  # Triton has no mma on sm_75
    assert compile_check.problem(dict(rec, mma="fma", dtype="fp32")) == ""  # "ieee" fp32 dots


def test_jobs_cover_every_kernel_and_bf16_only_from_sm80():
    js = compile_check.jobs()
    assert {j["kernel"] for j in js} == set(compile_check.KERNELS)
    assert {j["arch"] for j in js if j["dtype"] == "bf16"} == {80, 86, 89, 90, 120}
    forward = {(j["arch"], j["head_dim"], j["causal"]) for j in js if j["kernel"] == "forward"}
    assert len(forward) == 6 * 4 * 2


def test_t4_gets_smaller_tiles_than_a100():
    t4, a100 = launch.ARCHS[75], launch.ARCHS[80]
    for fn in (launch.forward_config, launch.dkdv_config, launch.dq_config):
        small, big = fn(t4, torch.float16, 128, True), fn(a100, torch.float16, 128, True)
        assert small.block_m * small.block_n * small.num_stages < big.block_m * big.block_n * big.num_stages


def test_interpreter_configs_are_unchanged():
    assert launch.forward_config(None, torch.float16, 64, False) == launch.Config(64, 32, 4, 1)
    assert launch.dkdv_config(None, torch.float32, 64, True) == launch.Config(32, 64, 4, 1)
    assert launch.dq_config(None, torch.float32, 64, True) == launch.Config(64, 32, 4, 1)
    if device.INTERPRET:
        assert launch.current_arch() is None


def test_bfloat16_before_ampere_is_a_clear_error():
    with pytest.raises(ValueError, match=r"bfloat16.*sm_75.*float16"):
        launch.dkdv_config(launch.ARCHS[75], torch.bfloat16, 64, False)
    launch.forward_config(launch.ARCHS[80], torch.bfloat16, 64, False)  # fine from sm_80


def test_cli_rejects_unknown_arch(capsys):
    with pytest.raises(SystemExit) as exit_info:
        labkit_main(["compile-check", "--arch", "75,61"])
    assert exit_info.value.code == 2 and "61" in capsys.readouterr().err


def test_cli_writes_json(tmp_path, monkeypatch):
    small = [dict(arch=90, kernel="softmax", dtype="fp16", head_dim=None, causal=None,
                  config=[1024, 0, 4, 1])]
    monkeypatch.setattr(compile_check, "jobs", lambda archs, kernels=None: small)
    out = tmp_path / "out.json"
    assert labkit_main(["compile-check", "--arch", "90", "--json", str(out)]) == 0
    (rec,) = json.loads(out.read_text())
    assert rec["ok"] and rec["kernel"] == "softmax" and rec["mma"] == "none"


def _fake(arch, kernel, dtype, shared, registers, spill=0, mma="mma", error=""):
    """A compile-check record with made-up numbers (formatter tests only; never written to benchmarks/)."""
    return dict(arch=arch, kernel=kernel, dtype=dtype, head_dim=64, causal=False, config=[64, 32, 4, 1],
                shared_bytes=shared, shared_limit=launch.ARCHS[arch].shared_limit, registers=registers,
                spill_bytes=spill, mma=mma, ok=not error, error=error)


def test_markdown_report_on_fabricated_records(tmp_path, capsys):
    good = [_fake(80, "forward", "fp16", 1000, 100), _fake(80, "dq", "bf16", 3000, 200),
            _fake(80, "forward", "fp32", 5000, 90, mma="fma"), _fake(90, "softmax", "fp16", 64, 40, mma="none")]
    bad = _fake(75, "dkdv", "fp32", 70000, 255, spill=16, mma="fma", error="needs 70000 bytes")
    page = compile_check.markdown_report(good + [bad], date="2026-01-01", machine="Fake CPU",
                                         versions={"triton": "0.0", "torch": "0.0"}, command="cmd",
                                         elapsed="compiled in 5 s")
    lines = page.splitlines()
    assert lines[:7] == ["# compile-check, 2026-01-01", "", "Machine: Fake CPU", "", "Versions: triton 0.0, torch 0.0",
                         "", "Command: `cmd`"]
    assert lines[8].startswith("5 configurations (compiled in 5 s); exit code 1.")
    assert "| sm_75 | 1 | 1 | 70000 | 65536 | 255 | 1 | - |" in lines
    assert "| sm_80 | 3 | 0 | 5000 | 166912 | 200 | 0 | mma |" in lines
    assert "| sm_90 | 1 | 0 | 64 | 232448 | 40 | 0 | - |" in lines
    assert lines[-1] == "- FAIL sm_75 dkdv fp32 D=64 causal=False config=[64, 32, 4, 1]: needs 70000 bytes"
    # the CLI formats an earlier --json file and exits as that run did
    src, md = tmp_path / "out.json", tmp_path / "out.md"
    src.write_text(json.dumps(good))
    (tmp_path / "log").write_text("...\n4 configurations compiled in 12 s\n")
    assert labkit_main(["compile-check", "--summary", str(src), "--log", str(tmp_path / "log"),
                        "--md", str(md)]) == 0
    text = md.read_text()
    assert text == capsys.readouterr().out
    assert "(compiled in 12 s); exit code 0." in text and text.endswith("## Failures\n\nNone.\n")
    assert f"Command: `python -m labkit compile-check --arch 80,90 --json {src}`" in text
