"""Does an exercise use the function it must re-implement? A static check of the notebook's code.

Reported: labkit's own version (``from labkit.softmax import safe_softmax``,
``labkit.softmax.safe_softmax``, any alias of them) and the library equivalents listed per
exercise in :data:`EQUIVALENTS` (``torch.softmax``, ``F.softmax``, ``x.softmax(...)`` for the softmax
exercises ...). It reads the source (``ast``), resolving the aliases every cell imports; it does
not run anything, so code that reaches the same function indirectly (``getattr``, ``exec``,
``__import__`` with a computed name) is not seen. Introduced for ``python -m labkit grade``.
"""
from __future__ import annotations

import ast

_SOFTMAX = ("torch.softmax", "torch.nn.functional.softmax", "torch.special.softmax", "torch.nn.Softmax",
            "scipy.special.softmax", ".softmax", "torch.log_softmax", "torch.nn.functional.log_softmax",
            ".log_softmax")
_LOGSUMEXP = ("torch.logsumexp", "torch.special.logsumexp", "scipy.special.logsumexp", ".logsumexp")
_ATTENTION = ("torch.nn.functional.scaled_dot_product_attention", "torch.nn.MultiheadAttention",
              "torch.nn.functional.multi_head_attention_forward")
_BACKWARD = _ATTENTION + ("torch.autograd.grad", "torch.autograd.backward", "torch.func.vjp", ".backward")
_SOLVE = ("numpy.linalg.solve", "numpy.linalg.inv", "numpy.linalg.lstsq", "scipy.linalg.solve", "scipy.linalg.inv",
          "scipy.linalg.lstsq", "torch.linalg.solve", "torch.linalg.inv", "scipy.sparse.linalg.spsolve")
_LU = ("scipy.linalg.lu_factor", "scipy.linalg.lu", "scipy.linalg.lu_solve", "torch.linalg.lu_factor",
       "torch.linalg.lu", "scipy.sparse.linalg.splu")
_TRIANGULAR = ("scipy.linalg.solve_triangular", "torch.linalg.solve_triangular")

# exercise (checker name) -> the library functions that do the exercise's work
EQUIVALENTS: dict[str, tuple[str, ...]] = {
    **{n: _SOFTMAX for n in ("naive_softmax", "safe_softmax", "online_softmax", "softmax_triton",
                             "online_softmax_triton", "normalize")},
    "logsumexp": _LOGSUMEXP,
    **{n: _ATTENTION for n in ("naive_attention", "tiled_attention", "flash_attention_forward",
                               "flash_attention_forward_triton")},
    **{n: _BACKWARD for n in ("flash_attention_backward", "flash_attention_backward_triton")},
    "back_substitution": _SOLVE + _TRIANGULAR,
    "gaussian_elimination": _SOLVE + _LU + _TRIANGULAR,
    "lu_factor": _SOLVE + _LU,
    **{n: _SOLVE for n in ("gauss_seidel", "gauss_seidel_sweep", "sor_sweep", "red_black_sweep")},
    "blocked_lu": _SOLVE + _LU + ("labkit.elimination.lu_factor", "labkit.elimination.lu_factor_loops",
                                  "labkit.elimination.lu_factor_rows", "labkit.elimination.lu_factor_rank1"),
    "elimination_flops": ("labkit.elimination.count_elimination_flops", "labkit.elimination.lu_flops"),
    "softmax_jacobian": ("torch.autograd.functional.jacobian", "torch.func.jacrev", "torch.func.jacfwd"),
}
CONVENTIONS = {"np": "numpy", "F": "torch.nn.functional", "sp": "scipy", "la": "scipy.linalg"}


def _parse(source: str) -> ast.AST | None:
    # IPython magics and shell escapes are not Python: blank those lines, keep the numbering
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n")]
    try:
        return ast.parse("\n".join(lines))
    except (SyntaxError, ValueError):
        return None


def aliases(sources: list[str]) -> dict[str, str]:
    """Every name the cells bind by an import, as the dotted name it stands for."""
    found = dict(CONVENTIONS)
    for source in sources:
        tree = _parse(source)
        for node in ast.walk(tree) if tree else ():
            if isinstance(node, ast.Import):
                for a in node.names:
                    found[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    found[a.asname or a.name] = f"{node.module}.{a.name}"
    return found


def _dotted(node: ast.AST, names: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([names.get(node.id, node.id)] + parts[::-1])


def reused(name: str, fn_name: str, cell_source: str, all_sources: list[str]) -> str | None:
    """The re-implemented function the exercise cell uses ('labkit.softmax.safe_softmax',
    'torch.softmax', '.softmax'), or None. Imports of labkit's own anywhere in the notebook count."""
    names = aliases(all_sources)
    own = {fn_name, name}
    for dotted in names.values():  # `from labkit.softmax import safe_softmax` in any cell
        if dotted.startswith("labkit.") and dotted.rsplit(".", 1)[-1] in own and not dotted.startswith("labkit.check"):
            return dotted
    tree = _parse(cell_source)
    library = EQUIVALENTS.get(name, ())
    for node in ast.walk(tree) if tree else ():
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("labkit") and \
                any(a.name == "*" for a in node.names) and not node.module.startswith("labkit.check"):
            return f"{node.module}.*"
        if not isinstance(node, (ast.Attribute, ast.Name)):
            continue
        dotted = _dotted(node, names) or ""
        if dotted.startswith("labkit.") and not dotted.startswith("labkit.check") and \
                dotted.rsplit(".", 1)[-1] in own:
            return dotted
        if dotted in library:
            return dotted
        if isinstance(node, ast.Attribute) and f".{node.attr}" in library:
            return f".{node.attr}"
    return None
