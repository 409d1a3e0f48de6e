import triton
import triton.language as tl


@triton.jit
def online_softmax_kernel(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    """One program per row, looping over column blocks: pass 1 for (m_i, l_i), pass 2 to normalise."""
    row = tl.program_id(0)
    m_i = -float("inf")
    l_i = 0.0
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                    other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m_i, tl.max(x, axis=0))
        base = tl.where(m_new == -float("inf"), 0.0, m_new)  # a block of all -inf
        l_i = l_i * tl.exp(m_i - base) + tl.sum(tl.exp(x - base), axis=0)
        m_i = m_new
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                    other=-float("inf")).to(tl.float32)
        y = tl.exp(x - m_i) / l_i
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)


def online_softmax_triton(x, block=64):
    """Row softmax of a 2-D tensor with online_softmax_kernel, in blocks of `block` columns."""
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    online_softmax_kernel[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols, BLOCK=block)
    return y