"""The one device switch: CPU or GPU, Triton compiled or interpreted, and the size profile.

Without CUDA this module sets ``TRITON_INTERPRET=1`` before Triton is imported, so
every ``@triton.jit`` kernel in the course runs on CPU tensors through Triton's
interpreter (slow and debuggable; one program at a time, and a memory guard: labkit.kernels.guard).
Introduced in notebook 00.
"""
from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass

import torch

HAS_CUDA: bool = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")
INTERPRET: bool = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

try:  # Triton ships wheels for Linux only; elsewhere the Triton parts of the course skip.
    import triton  # noqa: F401

    HAS_TRITON: bool = True
    _TRITON_ERROR = ""
except ImportError as err:  # pragma: no cover - exercised on macOS/Windows only
    HAS_TRITON = False
    _TRITON_ERROR = str(err)

DEVICE: torch.device = torch.device("cuda" if HAS_CUDA else "cpu")


def _old_interpreter_warning() -> str:
    """Triton 3.6's interpreter fails inside numpy >= 2.4 (compiled GPU runs are unaffected)."""
    if not (HAS_TRITON and INTERPRET):
        return ""
    import numpy
    import triton

    old_triton = tuple(int(p) for p in triton.__version__.split(".")[:2]) < (3, 7)
    new_numpy = tuple(int(p) for p in numpy.__version__.split(".")[:2]) >= (2, 4)
    if old_triton and new_numpy:
        return (f"Triton {triton.__version__}'s interpreter does not work with numpy "
                f"{numpy.__version__}: on a CPU use the pinned triton (make install), or numpy < 2.4")
    return ""


_OLD_INTERPRETER = _old_interpreter_warning()
if _OLD_INTERPRETER:  # pragma: no cover - only with an unpinned, older triton
    import warnings

    warnings.warn(_OLD_INTERPRETER, RuntimeWarning, stacklevel=2)

TRITON_MISSING = (
    "Triton is not installed on this platform ({}), so the Triton parts of the course "
    "are skipped; everything else works.".format(platform.system())
)


def require_triton() -> None:
    """Raise a one-line RuntimeError when Triton is unavailable (macOS, Windows)."""
    if not HAS_TRITON:
        raise RuntimeError(TRITON_MISSING)


@dataclass(frozen=True)
class Profile:
    """Problem sizes the notebooks and benchmarks use: small on CPU, larger on GPU."""

    name: str
    rows: int  # softmax rows
    widths: tuple[int, ...]  # softmax row widths swept in plots and benchmarks
    seq_lens: tuple[int, ...]  # attention sequence lengths swept
    batch_heads: int  # B*H for attention sweeps
    head_dim: int
    linsys_n: int  # dense linear-system size for sweeps


PROFILES = {
    "small": Profile("small", rows=64, widths=(128, 512, 1024, 2048),
                     seq_lens=(128, 256, 512), batch_heads=2, head_dim=32, linsys_n=256),
    "large": Profile("large", rows=4096, widths=(1024, 2048, 4096, 8192, 16384, 32768),
                     seq_lens=(1024, 2048, 4096, 8192, 16384), batch_heads=32, head_dim=64,
                     linsys_n=2000),
}


def _pick_profile() -> Profile:
    name = os.environ.get("LABKIT_PROFILE", "large" if HAS_CUDA else "small")
    if name not in PROFILES:
        raise ValueError(f"LABKIT_PROFILE={name!r} is not one of {sorted(PROFILES)}")
    return PROFILES[name]


PROFILE: Profile = _pick_profile()


def report() -> str:
    """One-call environment report (notebook 00): versions, device, Triton mode, profile."""
    lines = [
        f"python   {sys.version.split()[0]} ({platform.system()} {platform.machine()})",
        f"torch    {torch.__version__}",
    ]
    if HAS_TRITON:
        import triton

        lines.append(f"triton   {triton.__version__}")
    else:
        lines.append("triton   not installed: " + TRITON_MISSING)
    if HAS_CUDA:
        lines.append(f"device   cuda: {torch.cuda.get_device_name(0)}")
        lines.append("kernels  compiled by Triton for the GPU")
    else:
        lines.append(f"device   cpu ({os.cpu_count()} cores), no CUDA GPU")
        lines.append("kernels  Triton interpreter (TRITON_INTERPRET=1): slow, CPU tensors, one program at a time"
                     if INTERPRET else "kernels  TRITON_INTERPRET is off: kernels need a GPU")
        if INTERPRET and HAS_TRITON:
            lines.append("memory   " + (GUARD or "every load and store is checked against the kernel's tensors"))
    lines.append(f"profile  {PROFILE.name} (set LABKIT_PROFILE=small|large to change)")
    return "\n".join(lines)


def _needs_triton(line: str, cell: str) -> None:
    """Cell magic ``%%needs_triton``: run the cell as usual, or print one line where Triton is missing."""
    if not HAS_TRITON:
        print(TRITON_MISSING)
        return
    from IPython import get_ipython

    ip = get_ipython()
    source = ip.transform_cell(cell)
    filename = ip.compile.cache(source)  # keeps the source findable, as @triton.jit needs
    exec(compile(source, filename, "exec"), ip.user_ns)  # errors propagate: the cell fails


def _register_magic() -> None:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return
    ip = get_ipython()
    if ip is not None:
        ip.register_magic_function(_needs_triton, magic_kind="cell", magic_name="needs_triton")


_register_magic()


# Interpreted kernels touch only the tensors they are given: a stray lane raises KernelMemoryError
# instead of writing into this process's heap (labkit.kernels.guard). '' when installed.
GUARD: str = ""  # last: labkit.kernels imports this module
if HAS_TRITON and INTERPRET:
    from labkit.kernels.guard import install as _install_guard

    GUARD = _install_guard()
