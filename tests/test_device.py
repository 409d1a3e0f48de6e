"""labkit.device: the one device switch, the size profile and the environment report."""
import os
import subprocess
import sys

import pytest
import torch

from labkit import device


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "LABKIT_PROFILE")}
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ,
                          timeout=120)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU path")
def test_without_cuda_the_interpreter_is_on_before_triton_is_imported():
    out = run_python("import os, labkit, triton; print(os.environ['TRITON_INTERPRET'], "
                     "labkit.device.INTERPRET, labkit.device.DEVICE)")
    assert out.stdout.split() == ["1", "True", "cpu"], out.stderr


def test_profile_is_small_on_cpu_and_overridable():
    expected = "large" if torch.cuda.is_available() else "small"
    assert device.PROFILE.name == expected
    out = run_python("import labkit; print(labkit.device.PROFILE.name)", LABKIT_PROFILE="large")
    assert out.stdout.strip() == "large", out.stderr
    assert device.PROFILES["small"].rows < device.PROFILES["large"].rows


def test_unknown_profile_is_a_clear_error():
    out = run_python("import labkit", LABKIT_PROFILE="huge")
    assert out.returncode != 0 and "LABKIT_PROFILE='huge' is not one of ['large', 'small']" in out.stderr


def test_report_names_versions_device_and_mode():
    text = device.report()
    assert f"torch    {torch.__version__}" in text
    assert "profile  " in text and ("cuda:" in text or "cpu (" in text)
    if not torch.cuda.is_available():
        assert "Triton interpreter" in text


def test_require_triton_and_the_missing_message():
    assert "Triton is not installed on this platform" in device.TRITON_MISSING
    if device.HAS_TRITON:
        device.require_triton()


def test_the_needs_triton_cell_magic_runs_or_skips(monkeypatch, capsys):
    """%%needs_triton runs a cell (errors propagate) where Triton exists, else prints one line."""
    from IPython.testing.globalipapp import start_ipython
    ip = start_ipython()
    device._register_magic()
    ip.run_cell_magic("needs_triton", "", "answer = 6 * 7")
    assert ip.user_ns["answer"] == 42
    with pytest.raises(ZeroDivisionError):
        ip.run_cell_magic("needs_triton", "", "1 / 0")
    monkeypatch.setattr(device, "HAS_TRITON", False)
    ip.run_cell_magic("needs_triton", "", "never = 1")
    assert "never" not in ip.user_ns
    assert capsys.readouterr().out.strip() == device.TRITON_MISSING


@pytest.mark.skipif(not (device.HAS_TRITON and device.INTERPRET), reason="concerns the CPU interpreter")
def test_old_triton_interpreter_with_new_numpy_is_named(monkeypatch):
    import numpy
    import triton
    monkeypatch.setattr(triton, "__version__", "3.6.0")
    monkeypatch.setattr(numpy, "__version__", "2.4.6")
    assert "Triton 3.6.0's interpreter does not work with numpy 2.4.6" in device._old_interpreter_warning()
    monkeypatch.setattr(numpy, "__version__", "2.3.5")
    assert device._old_interpreter_warning() == ""
