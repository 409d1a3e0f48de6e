"""Exercise checkers: ``check.<name>(fn)`` checks a student's version of ``labkit``'s ``<name>``.

Each prints one fixed pass line, reports a blank exercise as "not implemented yet", or
raises CheckFailed (an AssertionError shown short: the case, its inputs, what went wrong and a
hint that names the mistake). ``CHECKERS`` maps each exercise to the builder of its Checker.
"""
from labkit.check.core import CHECKERS, NOT_IMPLEMENTED, PASS, Case, Checker, CheckFailed, Probe  # noqa: F401
from labkit.check.tolerance import LOWP_FACTOR, TOLERANCES, Tol, assert_close, tolerance  # noqa: F401
from labkit.check.softmax import logsumexp, naive_softmax, normalize, overflow_threshold, safe_softmax  # noqa: F401
from labkit.check.softmax_online import merge_states, merge_states_many, online_softmax  # noqa: F401
from labkit.check.softmax_triton import online_softmax_triton, softmax_triton  # noqa: F401
from labkit.check.linsys import back_substitution, gaussian_elimination  # noqa: F401
from labkit.check.lu import lu_factor  # noqa: F401
from labkit.check.linsys_iterative import gauss_seidel, gauss_seidel_sweep, sor_sweep  # noqa: F401
from labkit.check.linsys_counts import elimination_flops  # noqa: F401
from labkit.check.linsys_structure import blocked_lu, red_black_sweep  # noqa: F401
from labkit.check.attention import naive_attention  # noqa: F401
from labkit.check.attention_tiles import flash_attention_forward, tiled_attention  # noqa: F401
from labkit.check.attention_triton import flash_attention_forward_triton  # noqa: F401
from labkit.check.attention_backward import flash_attention_backward  # noqa: F401
from labkit.check.attention_backward_triton import flash_attention_backward_triton  # noqa: F401
from labkit.check.attention_derivations import flash_hbm_accesses, softmax_jacobian  # noqa: F401
from labkit.check.claims import claim  # noqa: F401
from labkit.check.decoding import combine_partials, flash_decode_triton, kv_cache_bytes, paged_attention  # noqa: F401
