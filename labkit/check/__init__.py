"""Exercise checkers: ``check.<name>(fn)`` checks a student's version of ``labkit``'s ``<name>``.

Each prints one fixed pass line, reports a blank exercise as "not implemented yet", or
raises AssertionError with the case, the shapes, the worst error and a hint.
"""
from labkit.check.core import (  # noqa: F401
    LOWP_FACTOR, NOT_IMPLEMENTED, PASS, TOLERANCES, Case, Misconception, Tol, assert_close,
    run_checker, tolerance,
)
from labkit.check.softmax import (  # noqa: F401
    logsumexp, merge_states, naive_softmax, normalize, online_softmax, online_softmax_triton,
    overflow_threshold, safe_softmax, softmax_triton,
)
from labkit.check.linsys import (  # noqa: F401
    back_substitution, gauss_seidel, gauss_seidel_sweep, gaussian_elimination, lu_factor, sor_sweep,
)
from labkit.check.attention import flash_attention_forward, naive_attention, tiled_attention  # noqa: F401,E501
from labkit.check.attention import flash_attention_forward_triton  # noqa: F401
from labkit.check.attention_backward import flash_attention_backward  # noqa: F401
from labkit.check.attention_backward_triton import flash_attention_backward_triton  # noqa: F401
