"""What a line drawing is made of: does an outline close, and how many marks lie inside it.

Quick, Draw! bitmaps are strokes (bright) on an empty background (0). A drawing's outline closes
when some background cannot reach the image's edge without crossing a stroke (4-connected steps);
a mark inside it is a piece of stroke (8-connected) that touches neither that edge nor the outside
background: the eyes and mouth of a face drawn inside its head, the pips of a die. Counting them
picks, from a category's drawings, the ones drawn whole: `enclosed_marks(images) >= 2` keeps the
"smiley face" drawings with a closed head around two marks or more (about half of them), and
leaves out faces without a head, heads left open, and heads with nothing inside.

    marks = enclosed_marks(images)          # -1: no closed outline; else marks inside it
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _fill(mask, label, i, j, value, eight, stack):
    """Give `value` to every pixel of `mask` connected to (i, j) that has no label yet;
    returns how many. `stack` is scratch space of H * W (row, column) pairs."""
    h, w = mask.shape
    label[i, j] = value
    stack[0, 0], stack[0, 1] = i, j
    top, count = 1, 0
    while top:
        top -= 1
        a, b = stack[top, 0], stack[top, 1]
        count += 1
        for da in range(-1, 2):
            for db in range(-1, 2):
                if (da == 0 and db == 0) or (not eight and da != 0 and db != 0):
                    continue
                x, y = a + da, b + db
                if 0 <= x < h and 0 <= y < w and mask[x, y] and label[x, y] == 0:
                    label[x, y] = value
                    stack[top, 0], stack[top, 1] = x, y
                    top += 1
    return count


@njit(cache=True)
def _marks_one(image, threshold, min_area):
    h, w = image.shape
    stroke = image >= threshold
    space = ~stroke
    stack = np.empty((h * w, 2), np.int64)
    # the outside: background 4-connected to the edge (label 1)
    outside = np.zeros((h, w), np.int64)
    for i in range(h):
        for j in range(w):
            if (i == 0 or j == 0 or i == h - 1 or j == w - 1) and space[i, j] \
                    and outside[i, j] == 0:
                _fill(space, outside, i, j, 1, False, stack)
    # closed: some other background region of at least min_area pixels
    holes = outside.copy()
    largest = 0
    for i in range(h):
        for j in range(w):
            if space[i, j] and holes[i, j] == 0:
                largest = max(largest, _fill(space, holes, i, j, 2, False, stack))
    if largest < min_area:
        return -1
    # stroke pieces (8-connected) with no pixel on the edge or beside the outside
    pieces = np.zeros((h, w), np.int64)
    n = 0
    for i in range(h):
        for j in range(w):
            if stroke[i, j] and pieces[i, j] == 0:
                n += 1
                _fill(stroke, pieces, i, j, n, True, stack)
    free = np.ones(n + 1, np.bool_)
    for i in range(h):
        for j in range(w):
            k = pieces[i, j]
            if k == 0:
                continue
            if i == 0 or j == 0 or i == h - 1 or j == w - 1 \
                    or outside[i - 1, j] or outside[i + 1, j] \
                    or outside[i, j - 1] or outside[i, j + 1]:
                free[k] = False
    inside = 0
    for k in range(1, n + 1):
        inside += free[k]
    return inside


@njit(parallel=True, cache=True)
def _marks(images, threshold, min_area, out):
    for n in prange(images.shape[0]):
        out[n] = _marks_one(images[n], threshold, min_area)


def enclosed_marks(images, threshold: int = 128, min_area: int = 20) -> np.ndarray:
    """Per drawing of uint8 `images` (N, H, W), strokes >= `threshold` on a darker background:
    -1 where no outline closes around `min_area` background pixels or more, else the number of
    stroke pieces (8-connected) that touch neither the image's edge nor the background outside
    the outline. int64 (N,)."""
    a = np.asarray(images)
    if a.ndim != 3 or a.dtype != np.uint8:
        raise ValueError(f"enclosed_marks needs uint8 drawings (N, H, W), got {a.dtype} "
                         f"{a.shape}")
    if not 0 < threshold <= 255 or min_area < 1:
        raise ValueError(f"threshold must be in 1..255 and min_area at least 1, got "
                         f"{threshold} and {min_area}")
    out = np.empty(a.shape[0], np.int64)
    _marks(np.ascontiguousarray(a), np.uint8(threshold), int(min_area), out)
    return out
