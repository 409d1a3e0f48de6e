"""The one exercise registry: each exercise's notebook, the labkit functions that solve it and
the library functions that do its work (what a submission must not call).

An exercise's name is its checker's (``check.<name>``, ``labkit.check.core.CHECKERS``); its
label and the function a student writes are read from the solved notebook's check cell. A
library entry is a dotted name (``numpy.linalg.solve``, matched with anything under it), a
module followed by ``.*`` (everything in it), or ``~regex``: any library attribute or imported
name whose last part matches (the softmax pattern catches ``torch.softmax``,
``torch.ops.aten._softmax``, ``x.log_softmax`` and ``nn.Softmin``). Introduced for
``python -m labkit grade``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Exercise:
    """One exercise: its checker's name, its notebook, what it re-implements."""
    name: str
    notebook: str  # the solved notebook's file name
    labkit: tuple[str, ...]  # labkit functions (any module) that do the exercise's work
    library: tuple[str, ...] = ()  # library functions that do it (see the module docstring)


SOFTMAX = (r"~^_*(special_)?(log_?|masked_|safe_)?soft_?(max|min)(_backward(_data)?|_int|_out)?$",)
LOGSUMEXP = SOFTMAX + (r"~^_*(special_)?log(sum|cumsum|add)exp2?$",)
ATTENTION = (r"~(?i)^_*(scaled_dot_product|multi_?head_?attention|flash_attention|efficient_attention|flash_attn|"
             r"cudnn_attention)",
             "torch.nn.functional.multi_head_attention_forward")
AUTOGRAD = ("torch.autograd.*", "torch.func.*", "functorch.*", "~^(backward|vjp|jvp|jacrev|jacfwd|jacobian|hessian)$")
_SOLVERS = ("solve", "solve_ex", "inv", "inv_ex", "inverse", "pinv", "lstsq", "tensorsolve", "tensorinv",
            "lu", "lu_factor", "lu_factor_ex", "lu_solve", "lu_unpack", "cholesky", "cholesky_ex", "cholesky_solve",
            "cho_factor", "cho_solve", "solve_banded", "solveh_banded", "ldl", "qr")
# a blocked LU is built from triangular solves and matrix products (level-3 BLAS): those stay allowed there
FACTOR = (f"~^({'|'.join(_SOLVERS)})$", "scipy.linalg.lapack.*", "scipy.linalg.get_lapack_funcs",
          "numpy.linalg.lapack_lite.*")
SOLVE = FACTOR + ("~^(solve_triangular|triangular_solve)$", "scipy.linalg.blas.*", "scipy.linalg.get_blas_funcs",
         "scipy.sparse.linalg.spsolve", "scipy.sparse.linalg.splu", "scipy.sparse.linalg.spilu",
         "scipy.sparse.linalg.factorized", "scipy.sparse.linalg.spsolve_triangular",
         *(f"scipy.sparse.linalg.{m}" for m in ("cg", "cgs", "gmres", "lgmres", "bicg", "bicgstab", "minres",
                                               "qmr", "lsqr", "lsmr", "gcrotmk", "tfqmr")))
_LU = ("lu_factor", "lu_factor_loops", "lu_factor_rows", "lu_factor_rank1", "lu_solve")

EXERCISES: tuple[Exercise, ...] = (
    Exercise("normalize", "00_start_here.ipynb", ("normalize",), SOFTMAX),
    Exercise("naive_softmax", "01_naive_softmax.ipynb", ("naive_softmax", "safe_softmax", "online_softmax"), SOFTMAX),
    Exercise("overflow_threshold", "01_naive_softmax.ipynb", ("overflow_threshold",)),
    Exercise("safe_softmax", "02_safe_softmax.ipynb", ("safe_softmax", "naive_softmax", "online_softmax"), SOFTMAX),
    Exercise("logsumexp", "02_safe_softmax.ipynb", ("logsumexp", "log_softmax"), LOGSUMEXP),
    Exercise("softmax_triton", "02_safe_softmax.ipynb", ("softmax_triton", "softmax_kernel", "online_softmax_triton",
                                                         "online_softmax_kernel"), SOFTMAX),
    Exercise("merge_states", "03_online_softmax.ipynb", ("merge_states", "merge_states_many")),
    Exercise("merge_states_many", "03_online_softmax.ipynb", ("merge_states_many",)),
    Exercise("online_softmax", "03_online_softmax.ipynb", ("online_softmax", "safe_softmax", "naive_softmax"), SOFTMAX),
    Exercise("online_softmax_triton", "03_online_softmax.ipynb", ("online_softmax_triton", "online_softmax_kernel",
                                                                  "softmax_triton", "softmax_kernel"), SOFTMAX),
    Exercise("naive_attention", "04_attention.ipynb", ("naive_attention", "tiled_attention", "flash_attention_forward",
                                                       "flash_attention_forward_reference"), ATTENTION),
    Exercise("tiled_attention", "05_tiled_flash_attention.ipynb", ("tiled_attention", "naive_attention",
                                                                   "flash_attention_forward"), ATTENTION),
    Exercise("flash_attention_forward", "05_tiled_flash_attention.ipynb",
             ("flash_attention_forward", "flash_attention_forward_reference", "naive_attention", "tiled_attention"),
             ATTENTION),
    Exercise("flash_hbm_accesses", "05_tiled_flash_attention.ipynb", ("flash_hbm_accesses",)),
    Exercise("flash_attention_forward_triton", "06_flash_attention_triton.ipynb",
             ("flash_attention_forward_triton", "flash_attention_triton", "flash_attention_forward",
              "naive_attention"), ATTENTION),
    Exercise("softmax_jacobian", "07_flash_attention_backward.ipynb", ("softmax_jacobian",), AUTOGRAD),
    Exercise("flash_attention_backward", "07_flash_attention_backward.ipynb",
             ("flash_attention_backward", "flash_attention_backward_reference"), ATTENTION + AUTOGRAD),
    Exercise("flash_attention_backward_triton", "07_flash_attention_backward.ipynb",
             ("flash_attention_backward_triton", "flash_attention_triton", "flash_attention_backward"),
             ATTENTION + AUTOGRAD),
    Exercise("back_substitution", "08_gaussian_elimination.ipynb", ("back_substitution", "gaussian_elimination") + _LU,
             SOLVE),
    # the notebook lets it call elimination.back_substitution
    Exercise("gaussian_elimination", "08_gaussian_elimination.ipynb", ("gaussian_elimination",) + _LU, SOLVE),
    Exercise("lu_factor", "08_gaussian_elimination.ipynb", _LU, SOLVE),
    Exercise("elimination_flops", "08_gaussian_elimination.ipynb", ("elimination_flops", "count_elimination_flops",
                                                                    "lu_flops")),
    Exercise("blocked_lu", "08_gaussian_elimination.ipynb", ("blocked_lu",) + _LU, FACTOR),
    Exercise("gauss_seidel_sweep", "09_gauss_seidel.ipynb", ("gauss_seidel_sweep", "gauss_seidel_sweep_getrow",
                                                             "sor_sweep", "gauss_seidel", "sor"), SOLVE),
    # the notebook builds it on the sweep of Exercise 9.1
    Exercise("gauss_seidel", "09_gauss_seidel.ipynb", ("gauss_seidel", "sor", "splitting_solver"), SOLVE),
    Exercise("sor_sweep", "09_gauss_seidel.ipynb", ("sor_sweep", "sor"), SOLVE),
    Exercise("red_black_sweep", "09_gauss_seidel.ipynb", ("red_black_sweep", "poisson_red_black"), SOLVE),
    Exercise("kv_cache_bytes", "10_attention_at_inference.ipynb", ("kv_cache_bytes", "kv_cache_bytes_of")),
    Exercise("combine_partials", "10_attention_at_inference.ipynb", ("combine_partials", "flash_decode",
                                                                      "merge_states", "merge_states_many")),
    # the notebook lets it call decoding.decode_attention once the keys and values are gathered
    Exercise("paged_attention", "10_attention_at_inference.ipynb", ("paged_attention", "paged_attention_triton",
                                                                     "flash_decode", "flash_decode_triton"),
             ATTENTION),
    Exercise("flash_decode_triton", "10_attention_at_inference.ipynb", ("flash_decode_triton", "flash_decode",
                                                                         "decode_partials_kernel",
                                                                         "paged_attention_triton"), ATTENTION),
)
BY_NAME: dict[str, Exercise] = {e.name: e for e in EXERCISES}


def exercise(name: str) -> Exercise:
    """The registered exercise, or one that re-implements only labkit's function of that name
    (a course's own exercises, registered with ``--checkers``)."""
    return BY_NAME.get(name) or Exercise(name, "", (name,))
