"""labkit.bench.gpu_attention on a CPU: the sweep's machinery at tiny sizes, the FLOP convention, the report format.

No GPU number is made here: the sweep runs on the CPU (where cuDNN and efficient SDPA have no
kernel, which exercises the 'not measured' notes) and the report is formatted from records
fabricated in memory.
"""

import pytest

from labkit import device
from labkit.bench import attention as cpu_bench
from labkit.bench import gpu_attention as ga


def test_flop_convention_matches_the_cpu_bench():
    assert ga.flops(2, 3, 1024, 64, False) == 4 * 2 * 3 * 1024**2 * 64
    assert ga.flops(2, 3, 1024, 64, True) == ga.flops(2, 3, 1024, 64, False) / 2
    assert ga.BWD_FACTOR == 2.5 and cpu_bench.FWD_BWD_FACTOR == 3.5
    t = 1e-3
    assert cpu_bench._tflops(6, 1024, 64, True, t, cpu_bench.FWD_BWD_FACTOR) == pytest.approx(
        3.5 * ga.flops(1, 6, 1024, 64, True) / t / 1e12)


@pytest.mark.skipif(device.HAS_CUDA, reason="checks the CPU backends")
def test_sweep_on_cpu_notes_missing_backends_and_the_default():
    records, notes, defaults = ga.measure("cpu", ("fp32",), (16,), (32,), causals=(False, True), tokens=64,
                                        hidden=32, budget_s=60, rep=1, triton=False, log=lambda s: None)
    assert set(defaults.values()) == {"flash"}  # SDPA's CPU flash kernel
    got = {(r["pass_"], r["causal"], r["provider"]) for r in records}
    assert got == {(p, c, s) for p in ga.PASSES for c in (False, True) for s in ("SDPA default", "SDPA flash")}
    assert all(r["err"] < 1e-5 and r["batch"] == 2 and r["heads"] == 2 for r in records)
    assert any(n.startswith("SDPA cuDNN not measured") for n in notes)
    assert any(n.startswith("SDPA efficient not measured") for n in notes)


def test_spent_budget_skips_with_a_note():
    records, notes, defaults = ga.measure("cpu", ("fp32",), (16,), (32, 64), causals=(False,), tokens=64,
                                        hidden=32, budget_s=-1, triton=False, log=lambda s: None)
    assert records == [] and defaults == {}
    assert notes == ["Time budget of -1 s spent: not measured at fp32 D=16 N=32, fp32 D=16 N=64."]


def _rec(pass_, n, provider, ms, **kw):
    rec = dict(pass_=pass_, dtype="fp16", head_dim=64, causal=False, n=n, batch=16384 // n, heads=32,
               provider=provider, ms=ms, peak_mib=10.0 * n / 1024, err=0.001)
    rec.update(kw)
    f = ga.flops(rec["batch"], rec["heads"], n, rec["head_dim"], rec["causal"])
    rec["tflops"] = f * (1 if pass_ == "forward" else 3.5) / (ms / 1e3) / 1e12
    return rec


def test_report_format_on_fabricated_records():
    records = [_rec("forward", 1024, "SDPA default", 1.0), _rec("forward", 1024, "labkit Triton", 2.0),
               _rec("forward+backward", 1024, "SDPA default", 3.0), _rec("forward", 2048, "SDPA default", 2.0)]
    defaults = {("fp16", 64, False, 1024): "flash", ("fp16", 64, False, 2048): "cuDNN"}
    text = ga.format_report(records, ["a note"], defaults, "Fake GPU", {"torch": "0.0"}, "2026-01-01")
    lines = text.splitlines()
    assert lines[0] == "# Attention on Fake GPU, 2026-01-01" and "Versions: torch 0.0" in lines
    assert "- **flash** at 1 of 2 shapes: fp16 D=64 N=1024" in lines
    f = ga.flops(16, 32, 1024, 64, False)
    fwd, bwd = f / 1e-3 / 1e12, 2.5 * f / 2e-3 / 1e12  # backward: 3 ms - 1 ms
    assert f"| 1024 | 16×32 | {fwd:.1f} | {fwd / 2:.1f} | 0.001 |" in lines
    assert f"| 1024 | 16×32 | {3.5 * f / 3e-3 / 1e12:.1f} ({bwd:.1f}) | - | 0.001 |" in lines
    assert "| 2048 | 8×32 | " + f"{ga.flops(8, 32, 2048, 64, False) / 2e-3 / 1e12:.1f} | - | 0.001 |" in lines
    assert "## Peak memory (MiB above the inputs) against N: forward, fp16, D=64" in lines
    assert "| 2048 | 20.0 | - |" in lines
    assert lines[-1] == "- a note"


@pytest.mark.skipif(device.HAS_CUDA, reason="the CPU message only shows without CUDA")
def test_cli_needs_a_gpu(capsys, tmp_path):
    assert ga.main(["--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == ga.NEEDS_GPU and not list(tmp_path.iterdir())


def test_cli_rejects_bad_arguments(capsys):
    for argv in (["--dtype", "fp8"], ["--budget", "0"], ["--n", "1k"]):
        with pytest.raises(SystemExit) as exit_info:
            ga.main(argv)
        assert exit_info.value.code == 2
    assert "fp8" in capsys.readouterr().err


@pytest.mark.skipif(not device.HAS_TRITON, reason=device.TRITON_MISSING)
def test_triton_provider_agrees_with_sdpa_at_a_tiny_size():
    import torch

    (label, fn), = [(label, fn) for label, fn in ga.providers(True, triton=True) if "Triton" in label]
    q, k, v = (torch.randn(1, 2, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(3))
    sdpa = ga.providers(True, triton=False)[0][1]
    assert label == "labkit Triton" and (fn(q, k, v) - sdpa(q, k, v)).abs().max() < 1e-4
