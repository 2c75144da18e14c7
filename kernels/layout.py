"""Batch-last memory: (N, C, H, W)-shaped views of C-contiguous (C, H, W, N) arrays.

The convolutions work on (C, H, W, N) images and hand their results back as (N, C, H, W) views
of that memory, with no transpose. Pointwise layers keep it (`in_memory_order`), batchnorm reads
each channel as one contiguous row, and the next convolution takes it as it lies; only a
reshape that mixes the batch with the rest (a flatten before a linear layer) copies, with the
tiled transpose kernel rather than NumPy's slower strided copy.
"""

from __future__ import annotations

from minigan import backend

from .conv import transpose2d


def _to_last(nd):
    return (*range(1, nd), 0)


def _to_first(nd):
    return (nd - 1, *range(nd - 1))


def batch_last(a) -> bool:
    """True for an (N, ...) array (N > 1) whose memory is C-contiguous (..., N), batch innermost;
    False for a C-contiguous array or any other layout."""
    if a.ndim < 2 or a.shape[0] < 2 or a.flags.c_contiguous:
        return False
    return a.transpose(_to_last(a.ndim)).flags.c_contiguous


def batch_first_copy(a):
    """A C-contiguous copy of a batch-last array."""
    n = a.shape[0]
    return transpose2d(a.transpose(_to_last(a.ndim)).reshape(-1, n)).reshape(a.shape)


def last_memory(a):
    """The values of `a` (N, ...) as a C-contiguous (..., N) array: a view when `a` is batch-last
    already, else a copy with the tiled transpose."""
    t = a.transpose(_to_last(a.ndim))
    if t.flags.c_contiguous:
        return t
    n = a.shape[0]
    return transpose2d(backend.array_module(a).ascontiguousarray(a).reshape(n, -1)).reshape(t.shape)


def from_last_memory(m):
    """The (N, ...) view of C-contiguous (..., N) memory: a batch-last array."""
    return m.transpose(_to_first(m.ndim))


def batch_last_copy(a):
    """The values of `a` (N, ...) copied into batch-last memory, returned as an (N, ...) view."""
    return from_last_memory(last_memory(a))


def in_memory_order(fn, *arrays, **kwargs):
    """fn(*arrays, **kwargs) for a pointwise fn (one whose result at an index depends only on
    the inputs at that index), computed in the memory order of the first array. When it is
    batch-last, fn runs on the memory as it lies (the contiguous (..., N) transposes) and its
    result(s) come back in the same layout; other arrays are first brought to the first one's
    layout with the tiled transpose (NumPy's strided copy is 2-3x slower one way)."""
    a = arrays[0]
    if a.ndim < 2 or any(b.shape != a.shape for b in arrays):
        return fn(*arrays, **kwargs)
    if not batch_last(a):
        if a.flags.c_contiguous:
            arrays = tuple(batch_first_copy(b) if batch_last(b) else b for b in arrays)
        return fn(*arrays, **kwargs)
    to_last, to_first = _to_last(a.ndim), _to_first(a.ndim)
    out = fn(*((b if batch_last(b) else batch_last_copy(b)).transpose(to_last) for b in arrays),
             **kwargs)
    if isinstance(out, tuple):
        return tuple(o.transpose(to_first) for o in out)
    return out.transpose(to_first)
