"""engine.geometry against answers worked out by hand (the app runs without OpenCV, so no comparison with it here)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine import geometry


def test_resize_of_a_ramp_follows_pixel_centres():
    # Doubling a 0, 64, 128, 192 ramp: output centres sit at source x = -0.25, 0.25, 0.75, ... (edges clamped).
    ramp = np.array([[0, 64, 128, 192]], np.uint8).repeat(2, axis=0)
    out = geometry.resize_linear(ramp, 8, 2)
    assert out[0].tolist() == [0, 16, 48, 80, 112, 144, 176, 192]
    floats = geometry.resize_linear(ramp.astype(np.float32) / 255, 8, 2)
    np.testing.assert_allclose(floats[0] * 255, [0, 16, 48, 80, 112, 144, 176, 192], atol=1e-3)


def test_resize_halving_averages_pairs_and_keeps_channels():
    image = np.zeros((4, 4, 3), np.uint8)
    image[:, ::2] = 100
    image[:, 1::2] = 201
    out = geometry.resize_linear(image, 2, 2)
    assert out.shape == (2, 2, 3)
    assert (out == 151).all()  # (100 + 201) / 2 = 150.5, rounded half up as OpenCV does


def test_resize_to_same_size_is_identity_and_rejects_empty_sizes():
    image = np.random.default_rng(0).integers(0, 256, (5, 7), dtype=np.uint8)
    assert (geometry.resize_linear(image, 7, 5) == image).all()
    with pytest.raises(ValueError, match="at least 1 pixel"):
        geometry.resize_linear(image, 0, 5)


def test_grow_2x2_extends_down_and_right():
    mask = np.zeros((4, 4), np.uint8)
    mask[1, 1] = 1
    grown = geometry.grow_2x2(mask)
    assert np.argwhere(grown).tolist() == [[1, 1], [1, 2], [2, 1], [2, 2]]


def _hull_set(hull):
    return sorted(map(tuple, np.asarray(hull).tolist()))


def test_outline_hulls_finds_regions_diagonal_joins_and_holes():
    mask = np.zeros((9, 12), np.uint8)
    mask[1:4, 1:4] = 1
    mask[2, 2] = 0  # a one-pixel hole
    mask[4, 4] = 1  # touches the square only diagonally: the same 8-connected region
    mask[6:8, 7:11] = 1  # a separate bar
    hulls = geometry.outline_hulls(mask)
    assert len(hulls) == 3
    assert _hull_set(hulls[0]) == [(1, 1), (1, 3), (3, 1), (4, 4)]  # (3, 3) lies on the edge to (4, 4)
    assert _hull_set(hulls[1]) == [(7, 6), (7, 7), (10, 6), (10, 7)]
    # The hole's outline runs through the four pixels beside it (OpenCV traces the same).
    assert _hull_set(hulls[2]) == [(1, 2), (2, 1), (2, 3), (3, 2)]


def test_outline_hulls_ignores_background_reaching_the_border():
    mask = np.ones((5, 5), np.uint8)
    mask[0, 2] = mask[1, 2] = 0  # a notch open to the top edge, not a hole
    assert len(geometry.outline_hulls(mask)) == 1
    assert geometry.outline_hulls(np.zeros((3, 3), np.uint8)) == []


def test_outline_hulls_labels_a_long_snake_as_one_region():
    # A serpentine joins 40 bars end to end: label propagation must not stop after a few passes.
    mask = np.zeros((81, 30), np.uint8)
    mask[::2, 1:29] = 1
    for row in range(1, 81, 2):
        mask[row, 28 if row % 4 == 1 else 1] = 1
    assert len(geometry.outline_hulls(mask)) == 1


def test_min_area_rect_of_a_turned_rectangle():
    angle = math.radians(30)
    along, across = np.array([math.cos(angle), math.sin(angle)]), np.array([-math.sin(angle), math.cos(angle)])
    corners = np.array([[0, 0], 40 * along, 40 * along + 10 * across, 10 * across]) + [100, 50]
    inside = corners[0] + np.outer(np.linspace(0.1, 0.9, 5), 40 * along) + 5 * across
    box, side_a, side_b = geometry.min_area_rect(np.vstack([corners, inside]))
    assert sorted([side_a, side_b]) == pytest.approx([10, 40], abs=1e-4)
    np.testing.assert_allclose(sorted(box.tolist()), sorted(corners.tolist()), atol=1e-3)  # box is float32


def test_min_area_rect_degenerate_inputs_and_exact_upright_corners():
    box, a, b = geometry.min_area_rect(np.array([[3, 4], [3, 4]]))
    assert min(a, b) == 0 and (box == [3, 4]).all()
    box, a, b = geometry.min_area_rect(np.array([[0, 0], [10, 0], [10, 5], [0, 5], [4, 2]]))
    assert sorted([a, b]) == [5, 10]
    assert _hull_set(box) == [(0, 0), (0, 5), (10, 0), (10, 5)]  # exact integers: the unclip step truncates


def test_polygon_area_perimeter_and_mask():
    square = np.array([[1, 1], [5, 1], [5, 4], [1, 4]])
    assert geometry.polygon_area(square) == 12
    assert geometry.polygon_perimeter(square) == 14
    mask = geometry.polygon_mask(square, 6, 7)
    assert np.argwhere(mask).min(0).tolist() == [1, 1] and np.argwhere(mask).max(0).tolist() == [4, 5]
    assert mask.sum() == 4 * 5  # the outline is painted too
    triangle = geometry.polygon_mask(np.array([[0, 0], [4, 0], [0, 4]]), 5, 5)
    assert triangle[0, 4] and triangle[4, 0] and triangle[2, 2] and not triangle[3, 3]


def test_perspective_matrix_maps_the_corners():
    src = np.array([[3.5, 4.0], [50.0, 8.0], [49.0, 30.0], [2.0, 25.0]], np.float32)
    dst = np.array([[0, 0], [48, 0], [48, 22], [0, 22]], np.float32)
    m = geometry.perspective_matrix(src, dst)
    mapped = np.c_[src, np.ones(4)] @ m.T
    np.testing.assert_allclose(mapped[:, :2] / mapped[:, 2:], dst, atol=1e-4)
    with pytest.raises(ValueError, match="on one line"):
        geometry.perspective_matrix(np.array([[0, 0], [1, 1], [2, 2], [3, 3]]), dst)


def test_warp_cubic_shifts_and_repeats_edges():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    # A whole-pixel translation samples pixels exactly (cubic weights 0, 1, 0, 0).
    shift = np.array([[1, 0, -5], [0, 1, -3], [0, 0, 1]], np.float64)
    out = geometry.warp_perspective_cubic(image, shift, 10, 8)
    assert (out == image[3:11, 5:15]).all()
    # Beyond the image, the edge pixels repeat.
    out = geometry.warp_perspective_cubic(image, np.array([[1, 0, 2], [0, 1, 0], [0, 0, 1]], np.float64), 4, 3)
    assert (out[:, 0] == image[:3, 0]).all() and (out[:, 1] == image[:3, 0]).all() and (out[:, 2] == image[:3, 0]).all()
    # A constant image stays constant under any warp (the weights sum to exactly 1).
    flat = np.full((10, 10), 77, np.uint8)
    tilt = geometry.perspective_matrix([[1.3, 0.7], [8.2, 1.1], [8.9, 7.6], [0.4, 8.8]], [[0, 0], [6, 0], [6, 6], [0, 6]])
    assert (geometry.warp_perspective_cubic(flat, tilt, 6, 6) == 77).all()


def test_cubic_weights_sum_to_one_and_interpolate_at_zero_offset():
    table = geometry._cubic_table()
    assert (table.sum(1) == 1 << 15).all()
    assert table[0].reshape(4, 4)[1, 1] == 1 << 15


# ---------------------------------------------------------------- fast paths against the plain formulas
# resize_linear and warp_perspective_cubic gather in flat rows and planes, in bands and sub-rectangles, for
# speed; these check them against the same arithmetic written pixel by pixel, over many sizes and shapes.

def _resize_plain(image, width, height):
    x0, x1, wx0, wx1 = geometry._linear_taps(image.shape[1], width, edge_weights=False)
    y0, y1, wy0, wy1 = geometry._linear_taps(image.shape[0], height, edge_weights=True)
    source = image.reshape(image.shape[0], image.shape[1], -1)
    if image.dtype == np.uint8:
        ax0, ax1 = geometry._fixed(wx0)[:, None], geometry._fixed(wx1)[:, None]
        by0, by1 = geometry._fixed(wy0)[:, None, None], geometry._fixed(wy1)[:, None, None]
        rows = source[:, x0].astype(np.int64) * ax0 + source[:, x1].astype(np.int64) * ax1
        top = ((rows[y0] >> 4) * by0) >> 16
        bottom = ((rows[y1] >> 4) * by1) >> 16
        out = np.clip((top + bottom + 2) >> 2, 0, 255).astype(np.uint8)
    else:
        source = source.astype(np.float32)
        rows = source[:, x0] * wx0[:, None] + source[:, x1] * wx1[:, None]
        out = rows[y0] * wy0[:, None, None] + rows[y1] * wy1[:, None, None]
    return out.reshape((height, width) + image.shape[2:])


def test_resize_matches_the_plain_formula_up_and_down():
    rng = np.random.default_rng(7)
    for case in range(40):
        h, w = rng.integers(1, 120, 2)
        out_h, out_w = rng.integers(1, 250, 2)
        shape = (h, w, 3) if case % 3 else (h, w)
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        if case % 5 == 0:
            image = np.rot90(image)  # not contiguous, as the OCR's turned crops are
        out = geometry.resize_linear(image, out_w, out_h)
        assert out.dtype == np.uint8 and (out == _resize_plain(image, out_w, out_h)).all(), (image.shape, out_w, out_h)
        floats = image.astype(np.float32) / 255
        np.testing.assert_array_equal(geometry.resize_linear(floats, out_w, out_h), _resize_plain(floats, out_w, out_h))
    # A strong shrink reads only some source rows, and a tall output spans several bands.
    image = rng.integers(0, 256, (400, 50, 3), dtype=np.uint8)
    for out_w, out_h in ((7, 9), (60, 1500)):
        assert (geometry.resize_linear(image, out_w, out_h) == _resize_plain(image, out_w, out_h)).all()


def _warp_plain(image, matrix, width, height):
    m = np.linalg.inv(matrix)
    source = image.reshape(image.shape[0], image.shape[1], -1)
    rows, cols = source.shape[:2]
    table = geometry._cubic_table()
    out = np.zeros((height, width, source.shape[2]), np.uint8)
    near_half = np.zeros((height, width), bool)
    for y in range(height):
        for x in range(width):
            u, v, s = m @ [x, y, 1.0]
            u, v = u * 32 / s, v * 32 / s
            # Here the operation order (this one's, not OpenCV's) can decide which way a position rounds.
            near_half[y, x] = min(abs(u % 1 - 0.5), abs(v % 1 - 0.5)) < 1e-6
            fx, fy = int(np.rint(u)), int(np.rint(v))
            weights = table[(fy & 31) * 32 + (fx & 31)].reshape(4, 4)
            ys = np.clip((fy >> 5) - 1 + np.arange(4), 0, rows - 1)
            xs = np.clip((fx >> 5) - 1 + np.arange(4), 0, cols - 1)
            total = np.einsum("ij,ijc->c", weights, source[ys][:, xs].astype(np.int64))
            out[y, x] = np.clip((total + (1 << 14)) >> 15, 0, 255)
    return out.reshape((height, width) + image.shape[2:]), near_half


def test_warp_matches_the_plain_formula_inside_and_beyond_the_edges():
    rng = np.random.default_rng(3)
    for case in range(6):
        image = rng.integers(0, 256, (30, 40, 3) if case % 2 else (30, 40), dtype=np.uint8)
        # A box partly outside the image, turned and tilted.
        corners = rng.uniform(-6, 46, (4, 2)).astype(np.float32)
        corners = corners[np.argsort(np.arctan2(corners[:, 1] - corners[:, 1].mean(), corners[:, 0] - corners[:, 0].mean()))]
        matrix = geometry.perspective_matrix(corners, [[0, 0], [17, 0], [17, 9], [0, 9]])
        out = geometry.warp_perspective_cubic(image, matrix, 17, 9)
        expected, near_half = _warp_plain(image, matrix, 17, 9)
        assert out.shape == expected.shape
        assert (out == expected)[~near_half].all() and near_half.mean() < 0.1


def test_runs_of_a_random_mask():
    mask = np.random.default_rng(5).random((23, 31)) > 0.6
    mask[:, 0] = mask[:, -1] = True  # runs touching both edges
    expected = []
    for y, row in enumerate(mask):
        x = 0
        while x < len(row):
            if row[x]:
                end = x
                while end + 1 < len(row) and row[end + 1]:
                    end += 1
                expected.append((y, x, end))
                x = end
            x += 1
    assert list(zip(*map(np.ndarray.tolist, geometry._runs(mask)))) == expected
