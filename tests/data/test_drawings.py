"""enclosed_marks on drawings whose answer is known by construction."""

import numpy as np
import pytest

from minigan.data.drawings import enclosed_marks


def _ring(size=28, r_out=11.5, r_in=10.0, center=(13.5, 13.5)):
    """A round outline two pixels wide: 255 on 0."""
    y, x = np.mgrid[:size, :size]
    d = np.hypot(y - center[0], x - center[1])
    return np.where((d <= r_out) & (d >= r_in), 255, 0).astype(np.uint8)


def _face():
    img = _ring()
    img[9:11, 9:11] = 255            # left eye
    img[9:11, 17:19] = 255           # right eye
    img[17, 9:19] = 255              # mouth
    return img


def test_a_closed_head_around_two_eyes_and_a_mouth_has_three_marks():
    assert enclosed_marks(_face()[None]).tolist() == [3]


def test_what_does_not_count():
    face = _face()
    empty_head = _ring()
    open_head = face.copy()
    open_head[12:16, 23:26] = 0      # a gap in the outline: the inside reaches the edge
    touching = face.copy()
    touching[17, 4:9] = 255          # the mouth drawn out to the outline: part of it now
    outside = _ring()
    outside[1, 1] = outside[26, 26] = 255       # marks outside the head
    no_head = np.zeros((28, 28), np.uint8)
    no_head[9:11, 9:11] = no_head[9:11, 17:19] = no_head[17, 9:19] = 255
    blank = np.zeros((28, 28), np.uint8)
    full = np.full((28, 28), 255, np.uint8)
    got = enclosed_marks(np.stack([empty_head, open_head, touching, outside, no_head, blank,
                                   full]))
    assert got.tolist() == [0, -1, 2, 0, -1, -1, -1]


def test_connectivity_strokes_join_diagonally_and_background_does_not_leak_through_corners():
    """A diamond outline drawn in single pixels, each touching the next at a corner only,
    still closes (background moves in 4 steps); a mark of two pixels meeting at a corner is
    one mark (strokes join in 8 steps)."""
    img = np.zeros((21, 21), np.uint8)
    for t in range(10):
        for y, x in ((t, 10 + t), (10 + t, 20 - t), (20 - t, 10 - t), (10 - t, t)):
            img[y, x] = 255
    img[9, 9] = img[10, 10] = 255            # one diagonal mark
    img[12, 8] = 255                         # a second, apart
    assert enclosed_marks(img[None]).tolist() == [2]
    img[10, 0] = 0                           # one pixel missing: the outline is open
    assert enclosed_marks(img[None]).tolist() == [-1]


def test_an_outline_along_the_image_edge_closes_and_thresholds_pick_the_strokes():
    img = np.zeros((12, 12), np.uint8)
    img[0, :] = img[-1, :] = img[:, 0] = img[:, -1] = 255      # a frame on the edge
    img[4, 4] = img[4, 7] = 255
    img[8, 3:9] = 100                                           # a faint mouth
    assert enclosed_marks(img[None]).tolist() == [2]
    assert enclosed_marks(img[None], threshold=100).tolist() == [3]
    assert enclosed_marks(img[None], min_area=101).tolist() == [-1]   # 100 pixels inside


def test_many_drawings_at_once_match_one_at_a_time():
    rng = np.random.default_rng(0)
    imgs = np.where(rng.random((40, 16, 16)) < 0.3, 255, 0).astype(np.uint8)
    imgs[:20] = np.stack([_face()[6:22, 6:22]] * 20)
    one = [int(enclosed_marks(x[None])[0]) for x in imgs]
    assert enclosed_marks(imgs).tolist() == one


def test_bad_input_says_what_is_wanted():
    with pytest.raises(ValueError, match=r"uint8 drawings \(N, H, W\)"):
        enclosed_marks(np.zeros((28, 28), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        enclosed_marks(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match="threshold"):
        enclosed_marks(np.zeros((2, 28, 28), np.uint8), threshold=0)
