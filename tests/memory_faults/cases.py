"""Wrong student answers (memory addressing / masking mistakes) for labkit's Triton exercises.

Each case is a complete kernel + wrapper, as a student would submit it in the notebook cell.
To keep them honest and readable, each is the notebook's own solution cell (read from the solved
notebook, its magic and solution markers dropped) with the student's mistake edited in; every edit
is asserted to apply exactly where intended. The materialised sources are written to src/<id>.py
by case_runner.py (and by `python cases.py --dump`).

Fields: id, exercise ("02", "03", "06", "07"), description (one line), expected
("out-of-bounds store", "out-of-bounds load", "in-bounds wrong values"), source.
"""
from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.abspath(__file__))

# Same imports the notebooks have in scope (notebook 06 imports LOG2E from flash_forward).
PRELUDE = ("import math\nimport torch\nimport triton\nimport triton.language as tl\n"
           "from labkit.kernels.flash_forward import LOG2E\n\n")


def _ref(ex: str) -> str:
    """The Triton exercise cell of notebook ``ex`` ("02", ...), without %%needs_triton and the markers."""
    import glob

    import nbformat
    path = glob.glob(os.path.join(os.path.dirname(os.path.dirname(_HERE)), "notebooks", f"{ex}_*.ipynb"))[0]
    cell = next(c.source for c in nbformat.read(path, as_version=4).cells
                if c.cell_type == "code" and "@triton.jit" in c.source and "### BEGIN SOLUTION" in c.source)
    return "\n".join(line for line in cell.split("\n")
                     if line.strip() not in ("%%needs_triton", "### BEGIN SOLUTION", "### END SOLUTION"))


def _edit(ex: str, edits: list[tuple]) -> str:
    """Apply (old, new[, count]) edits to the reference solution; each must match exactly count times."""
    src = _ref(ex)
    for e in edits:
        old, new = e[0], e[1]
        count = e[2] if len(e) > 2 else 1
        n = src.count(old)
        if n != count:
            raise ValueError(f"exercise {ex}: edit {old!r} matches {n} times, expected {count}")
        src = src.replace(old, new)
    return PRELUDE + src


CASES: list[dict] = []


def case(id, exercise, description, expected, edits):
    CASES.append(dict(id=id, exercise=exercise, description=description, expected=expected,
                      source=_edit(exercise, edits)))


# ---------------------------------------------------------------- notebook 02: softmax_kernel
_LOAD02 = 'x = tl.load(x_ptr + row * x_row_stride + offs, mask=mask, other=-float("inf")).to(tl.float32)'
_STORE02 = "tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=mask)"

case("02a", "02", "store without mask: writes all BLOCK lanes (padding past n_cols)",
     "out-of-bounds store",
     [(_STORE02, "tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty))")])

case("02b", "02", "load without mask (and no other): reads all BLOCK lanes past n_cols",
     "out-of-bounds load",
     [(_LOAD02, "x = tl.load(x_ptr + row * x_row_stride + offs).to(tl.float32)")])

case("02c", "02", "wrapper passes n_rows where the kernel expects n_cols (mask against the wrong bound)",
     "out-of-bounds store",
     [("softmax_kernel[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols,",
       "softmax_kernel[(n_rows,)](y, x, x.stride(0), y.stride(0), n_rows,")])

case("02d", "02", "mask uses <= instead of < (offs <= n_cols): one element too many per row",
     "out-of-bounds store",
     [("mask = offs < n_cols", "mask = offs <= n_cols")])

case("02e", "02", "row offset row * BLOCK instead of row * x_row_stride / y_row_stride (rows taken as BLOCK wide)",
     "out-of-bounds store",
     [("x_ptr + row * x_row_stride + offs", "x_ptr + row * BLOCK + offs"),
      ("y_ptr + row * y_row_stride + offs", "y_ptr + row * BLOCK + offs")])

case("02f", "02", "masked load without other=-inf: padding lanes read as 0 and enter max/sum",
     "in-bounds wrong values",
     [(_LOAD02, "x = tl.load(x_ptr + row * x_row_stride + offs, mask=mask).to(tl.float32)")])

case("02g", "02", "mask off by one the other way (offs < n_cols - 1): last column never read or written",
     "in-bounds wrong values",
     [("mask = offs < n_cols", "mask = offs < n_cols - 1")])

case("02h", "02", "wrapper allocates y with swapped shape (n_cols, n_rows): y.stride(0) = n_rows, too small per row",
     "out-of-bounds store",
     [("y = torch.empty_like(x)", "y = torch.empty(x.shape[1], x.shape[0], dtype=x.dtype, device=x.device)")])

case("02i", "02", "wrapper passes x.stride(1) (=1) as the row stride of x: rows overlap",
     "in-bounds wrong values",
     [("softmax_kernel[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols,",
       "softmax_kernel[(n_rows,)](y, x, x.stride(1), y.stride(0), n_cols,")])

# ------------------------------------------------------- notebook 03: online_softmax_kernel
_L1 = '''        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                    other=-float("inf")).to(tl.float32)
        m_new'''
_P2 = '''    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                    other=-float("inf")).to(tl.float32)
        y = tl.exp'''
_P1 = '''    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                    other=-float("inf")).to(tl.float32)
        m_new'''
_S03 = "tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)"

case("03a", "03", "pass 2 forgets + start: offs = tl.arange(0, BLOCK), only the first block is written (repeatedly)",
     "in-bounds wrong values",
     [(_P2, _P2.replace("offs = start + tl.arange(0, BLOCK)", "offs = tl.arange(0, BLOCK)"))])

case("03b", "03", "pass 1 forgets + start: (m_i, l_i) built from the first block only, n_cols/BLOCK times",
     "in-bounds wrong values",
     [(_P1, _P1.replace("offs = start + tl.arange(0, BLOCK)", "offs = tl.arange(0, BLOCK)"))])

case("03c", "03", "pass 2 store without mask: the last block writes past the end of the row",
     "out-of-bounds store",
     [(_S03, "tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty))")])

case("03d", "03", "pass 1 load without mask/other: the last block reads past the end of the row",
     "out-of-bounds load",
     [(_L1, "        x = tl.load(x_ptr + row * x_row_stride + offs).to(tl.float32)\n        m_new")])

case("03e", "03", "masks compare against BLOCK instead of n_cols (offs < BLOCK): never masks the ragged tail",
     "out-of-bounds store",
     [("offs < n_cols", "offs < BLOCK", 3)])

case("03f", "03", "masks use <= instead of < (offs <= n_cols): one element past each row",
     "out-of-bounds store",
     [("offs < n_cols", "offs <= n_cols", 3)])

case("03g", "03", "wrapper passes x.stride(1) (=1) as the row stride of x: rows overlap",
     "in-bounds wrong values",
     [("online_softmax_kernel[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols, BLOCK=block)",
       "online_softmax_kernel[(n_rows,)](y, x, x.stride(1), y.stride(0), n_cols, BLOCK=block)")])

case("03h", "03", "pass 1 masked load without other=-inf: padding lanes read as 0 and enter m_i/l_i",
     "in-bounds wrong values",
     [(_L1, "        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols).to(tl.float32)\n"
            "        m_new")])

case("03i", "03", "pass 2 walks the row backwards (offs = start - BLOCK + arange) masked only by offs < n_cols: "
     "negative offsets on the last step",
     "out-of-bounds store",
     [(_P2, '''    for start in range(n_cols, 0, -BLOCK):
        offs = start - BLOCK + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                    other=-float("inf")).to(tl.float32)
        y = tl.exp''')])

# ------------------------------------------------ notebook 06: flash_attention_forward_kernel
_KT = '''        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)  # (D, BLOCK_N)'''
_V = '''        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D)'''

case("06a", "06", "K tile loaded without mask: the ragged last key tile reads past n_kv",
     "out-of-bounds load",
     [(_KT, '''        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd)  # (D, BLOCK_N)''')])

case("06b", "06", "V tile loaded without mask: the ragged last value tile reads past n_kv",
     "out-of-bounds load",
     [(_V, '''        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd)  # (BLOCK_N, D)''')])

case("06c", "06", "K and V masks on the wrong axis (offs_d < HEAD_DIM, always true) instead of offs_n < n_kv",
     "out-of-bounds load",
     [("mask=offs_n[None, :] < n_kv, other=0.0)  # (D, BLOCK_N)", "mask=offs_d[:, None] < HEAD_DIM, other=0.0)  # (D, BLOCK_N)"),
      ("mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D)", "mask=offs_d[None, :] < HEAD_DIM, other=0.0)  # (BLOCK_N, D)")])

case("06d", "06", "K/V load masks and the score mask compare against n_q instead of n_kv",
     "out-of-bounds load",
     [("mask=offs_n[None, :] < n_kv, other=0.0)  # (D, BLOCK_N)", "mask=offs_n[None, :] < n_q, other=0.0)  # (D, BLOCK_N)"),
      ("mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D)", "mask=offs_n[:, None] < n_q, other=0.0)  # (BLOCK_N, D)"),
      ("        keep = offs_n[None, :] < n_kv\n", "        keep = offs_n[None, :] < n_q\n")])

case("06e", "06", "forgets + start_n: offs_n = tl.arange(0, BLOCK_N), the first K/V tile is used every iteration",
     "in-bounds wrong values",
     [("        offs_n = start_n + tl.arange(0, BLOCK_N)\n", "        offs_n = tl.arange(0, BLOCK_N)\n")])

case("06f", "06", "score mask drops the offs_n < n_kv bound (only the causal part): padding keys get score 0",
     "in-bounds wrong values",
     [("        keep = offs_n[None, :] < n_kv\n        if CAUSAL:\n            keep = keep & (offs_n[None, :] <= offs_m[:, None])\n        s = tl.where(keep, s, float(\"-inf\"))\n",
       "        if CAUSAL:\n            s = tl.where(offs_n[None, :] <= offs_m[:, None], s, float(\"-inf\"))\n")])

case("06g", "06", "wrapper allocates lse as (B, n_q), forgetting H: the kernel writes B*H*n_q floats into it",
     "out-of-bounds store",
     [("lse = torch.empty((B, H, n_q), dtype=torch.float32, device=q.device)",
       "lse = torch.empty((B, n_q), dtype=torch.float32, device=q.device)")])

case("06h", "06", "K/V addressed as K + off_bh * stride_kh (flattened B*H, assumes contiguous) instead of k_base/v_base",
     "in-bounds wrong values",
     [(_KT, '''        kt = tl.load(K + off_bh * stride_kh + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)  # (D, BLOCK_N)'''),
      (_V, '''        v = tl.load(V + off_bh * stride_vh + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D)''')])

case("06i", "06", "K^T tile with the strides swapped (offs_n * stride_kd + offs_d * stride_kn)",
     "out-of-bounds load",
     [(_KT, '''        kt = tl.load(k_base + offs_n[None, :] * stride_kd + offs_d[:, None] * stride_kn,
                     mask=offs_n[None, :] < n_kv, other=0.0)  # (D, BLOCK_N)''')])

# ---------------------------------------- notebook 07: flash_attention_backward_dkdv_kernel
_QL = '''        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)  # (BLOCK_M,)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
'''

case("07a", "07", "dK/dV kernel: LSE and DELTA loaded without mask: the ragged last query block reads past n_q",
     "out-of-bounds load",
     [("        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)  # (BLOCK_M,)\n"
       "        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)\n",
       "        lse = tl.load(LSE + off_bh * n_q + offs_m)  # (BLOCK_M,)\n"
       "        delta = tl.load(DELTA + off_bh * n_q + offs_m)\n")])

case("07b", "07", "dK/dV kernel: Q and dO tiles loaded without mask: the ragged last query block reads past n_q",
     "out-of-bounds load",
     [("        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D)\n"
       "        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)\n",
       "        q = tl.load(Q + q_offs)  # (BLOCK_M, D)\n"
       "        do = tl.load(DO + q_offs)\n")])

case("07c", "07", "dK/dV kernel forgets + start_m: offs_m = tl.arange(0, BLOCK_M), the first query block every iteration",
     "in-bounds wrong values",
     [("        offs_m = start_m + tl.arange(0, BLOCK_M)\n", "        offs_m = tl.arange(0, BLOCK_M)\n")])

case("07d", "07", "dK/dV kernel: LSE/DELTA row offset off_bh * stride_qh (Q's head stride, N*D) instead of off_bh * n_q",
     "out-of-bounds load",
     [("LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)  # (BLOCK_M,)", "LSE + off_bh * stride_qh + offs_m, mask=offs_m < n_q, other=0.0)  # (BLOCK_M,)"),
      ("DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)\n        s =",
       "DELTA + off_bh * stride_qh + offs_m, mask=offs_m < n_q, other=0.0)\n        s =")])

case("07e", "07", "dK/dV kernel: causal mask offs_n < offs_m (strict) instead of <=, drops the diagonal",
     "in-bounds wrong values",
     [("            keep = keep & (offs_n[None, :] <= offs_m[:, None])\n        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)\n        dv +=",
       "            keep = keep & (offs_n[None, :] < offs_m[:, None])\n        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)\n        dv +=")])

case("07f", "07", "dK/dV kernel: LSE/DELTA row offset off_bh * n_kv instead of off_bh * n_q",
     "out-of-bounds load",
     [("LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)  # (BLOCK_M,)",
       "LSE + off_bh * n_kv + offs_m, mask=offs_m < n_q, other=0.0)  # (BLOCK_M,)"),
      ("DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)\n        s =",
       "DELTA + off_bh * n_kv + offs_m, mask=offs_m < n_q, other=0.0)\n        s =")])

case("07g", "07", "wrapper allocates dk with q's shape (torch.empty_like(q)): too small when n_kv > n_q",
     "out-of-bounds store",
     [("dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)",
       "dq, dk, dv = torch.empty_like(q), torch.empty_like(q), torch.empty_like(v)")])

case("07h", "07", "dK/dV kernel: Q/dO row offset offs_m * stride_qh (head stride) instead of offs_m * stride_n",
     "out-of-bounds load",
     [("        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d\n        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D)",
       "        q_offs = q_base + offs_m[:, None] * stride_qh + offs_d[None, :] * stride_d\n        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D)")])

case("07i", "07", "dK/dV kernel: bounds mask built on the wrong axes (offs_m[None, :] < n_q) & (offs_n[:, None] < n_kv)",
     "in-bounds wrong values",
     [("        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)\n        if CAUSAL:\n            keep = keep & (offs_n[None, :] <= offs_m[:, None])\n        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)\n        dv +=",
       "        keep = (offs_m[None, :] < n_q) & (offs_n[:, None] < n_kv)\n        if CAUSAL:\n            keep = keep & (offs_n[None, :] <= offs_m[:, None])\n        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)\n        dv +=")])

case("07j", "07", "dK/dV kernel: final dK store without mask: the ragged last key block writes past n_kv",
     "out-of-bounds store",
     [("tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)",
       "tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty))")])

# Probe (beyond the 36): same unmasked dK store as 07j, but the wrapper allocates dk and dv as the two
# halves of one buffer, so the lanes past dK's end land inside dV (another tensor of the kernel)
# instead of in an allocator gap; dV's own store then overwrites them.
case("07k", "07", "dK store without mask (as 07j) + wrapper allocating dk, dv as halves of one buffer "
     "(dkv = torch.empty((2,) + k.shape); dk, dv = dkv.unbind(0))",
     "out-of-bounds store",
     [("tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)",
       "tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty))"),
      ("dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)",
       "dkv = torch.empty((2,) + tuple(k.shape), dtype=k.dtype, device=k.device)  # one allocation for dk and dv\n"
       "    dq, (dk, dv) = torch.empty_like(q), dkv.unbind(0)")])

# The unmodified notebook solutions, as controls (must pass and survive).
for _ex in ("02", "03", "06", "07"):
    CASES.append(dict(id=f"ref{_ex}", exercise=_ex, description="reference solution (control)",
                      expected="pass", source=PRELUDE + _ref(_ex)))


def get(case_id: str) -> dict:
    for c in CASES:
        if c["id"] == case_id:
            return c
    raise KeyError(case_id)


if __name__ == "__main__":
    import sys
    if "--dump" in sys.argv:
        os.makedirs(os.path.join(_HERE, "src"), exist_ok=True)
        for c in CASES:
            with open(os.path.join(_HERE, "src", f"{c['id']}.py"), "w", encoding="utf-8") as f:
                f.write(c["source"])
    for c in CASES:
        print(f"{c['id']:6} {c['exercise']}  {c['expected']:22} {c['description']}")
