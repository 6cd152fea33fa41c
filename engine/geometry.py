"""Image geometry in numpy: the few OpenCV operations the OCR and scene pipelines need.

The OCR models were verified against RapidOCR, which runs on OpenCV; these functions reproduce OpenCV's
results (its pixel-centre conventions, and for 8-bit images its fixed-point arithmetic), so the models
see the same pixels they were verified with, without shipping OpenCV (150 MB in the frozen app).

    resize_linear(image, width, height)          OpenCV resize, INTER_LINEAR
    grow_2x2(mask)                               dilate with a 2 x 2 kernel
    outline_hulls(mask)                          convex hulls of the outlines findContours(RETR_LIST) traces
    min_area_rect(points)                        minAreaRect + boxPoints
    polygon_mask(polygon, height, width)         fillPoly of one polygon
    perspective_matrix(src, dst)                 getPerspectiveTransform
    warp_perspective_cubic(image, matrix, w, h)  warpPerspective, INTER_CUBIC, BORDER_REPLICATE

Everything here is vectorised over pixels (or over runs of pixels); Python loops run per region, hull
vertex, band of output rows or filter tap only. Pixels are gathered from flat rows or per-channel planes,
never along a trailing axis of 3 channels, where numpy's inner loops would run 3 values at a time.
"""

from __future__ import annotations

import functools

import numpy as np

# ---------------------------------------------------------------- resize

# OpenCV's 8-bit bilinear resize works in fixed point: weights are multiples of 1/2048.
_RESIZE_BITS = 11
_RESIZE_ONE = 1 << _RESIZE_BITS


def resize_linear(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of an H x W (x C) array to height x width, without antialiasing.

    Pixel centres are aligned (source x = (x + 0.5) * scale - 0.5, clamped at the edges), as in OpenCV's
    INTER_LINEAR. uint8 images use OpenCV's fixed-point weights and rounding, so results match it
    bit for bit (to within 1 grey level where its SIMD and scalar paths differ); float images are
    interpolated in float32.
    """
    if width < 1 or height < 1:
        raise ValueError(f"cannot resize to {width} x {height}: sides must be at least 1 pixel")
    if image.ndim not in (2, 3) or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"cannot resize an array of shape {image.shape}: expected H x W or H x W x C")
    x0, x1, wx0, wx1 = _linear_taps(image.shape[1], width, edge_weights=False)
    y0, y1, wy0, wy1 = _linear_taps(image.shape[0], height, edge_weights=True)
    # Rows are handled as flat runs of W * C values, the x taps and weights repeated for each channel:
    # numpy then loops over whole rows, where a trailing axis of 3 channels would make it loop 3 at a time.
    channels = image.shape[2] if image.ndim == 3 else 1
    flat = image.reshape(image.shape[0], -1)
    per_channel = np.arange(channels)
    left = (x0[:, None] * channels + per_channel).ravel()
    right = (x1[:, None] * channels + per_channel).ravel()
    # The horizontal pass runs on the source rows the vertical pass reads only (a page shrunk to half
    # its height skips none, but a stronger shrink skips most).
    used, picks = np.unique(np.concatenate([y0, y1]), return_inverse=True)
    if len(used) < flat.shape[0]:
        flat = flat[used]
    upper, lower = picks[:height], picks[height:]
    shape = (height, width, channels) if image.ndim == 3 else (height, width)

    if image.dtype == np.uint8:
        rows = np.take(flat, left, axis=1).astype(np.int32)
        rows *= np.repeat(_fixed(wx0), channels)
        other = np.take(flat, right, axis=1).astype(np.int32)
        other *= np.repeat(_fixed(wx1), channels)
        rows += other
        # The vertical pass as OpenCV's SIMD code does it: 16-bit multiply-high of the rows shifted down
        # by 4, then a rounding shift by 2.
        rows >>= 4
        by0, by1 = _fixed(wy0)[:, None], _fixed(wy1)[:, None]
        out = np.empty((height, rows.shape[1]), np.uint8)
        # In bands of output rows, so the int32 temporaries stay in cache.
        band = max(1, 65536 // rows.shape[1])
        for start in range(0, height, band):
            stop = min(start + band, height)
            top = rows[upper[start:stop]]
            top *= by0[start:stop]
            top >>= 16
            bottom = rows[lower[start:stop]]
            bottom *= by1[start:stop]
            bottom >>= 16
            top += bottom
            top += 2
            top >>= 2
            out[start:stop] = np.clip(top, 0, 255)
        return out.reshape(shape)

    flat = flat.astype(np.float32, copy=False)
    rows = (np.take(flat, left, axis=1) * np.repeat(wx0, channels)
            + np.take(flat, right, axis=1) * np.repeat(wx1, channels))
    return (rows[upper] * wy0[:, None] + rows[lower] * wy1[:, None]).reshape(shape)


def _linear_taps(source: int, target: int, edge_weights: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each output pixel: the two source pixels it blends and their weights (float32, as OpenCV).

    Beyond the source's edges the edge pixel is repeated. OpenCV does that in two ways that give the same
    value in exact arithmetic but not in fixed point: across (x) it puts weight 1 on the edge pixel; down
    (y, `edge_weights`) it keeps the fractional weights and points both taps at the edge row.
    """
    scale = 1.0 / (target / source)  # OpenCV's own expression; differs from source / target in the last bit
    position = ((np.arange(target) + 0.5) * scale - 0.5).astype(np.float32)
    left = np.floor(position).astype(np.int64)
    fraction = (position - left).astype(np.float32)
    if not edge_weights:
        fraction[(left < 0) | (left >= source - 1)] = 0.0
    right = np.clip(left + 1, 0, source - 1)
    left = np.clip(left, 0, source - 1)
    return left, right, np.float32(1.0) - fraction, fraction


def _fixed(weights: np.ndarray) -> np.ndarray:
    return np.rint(weights * np.float32(_RESIZE_ONE)).astype(np.int32)


# ---------------------------------------------------------------- masks and regions

def grow_2x2(mask: np.ndarray) -> np.ndarray:
    """Dilation by a 2 x 2 square anchored at its bottom-right cell (OpenCV's anchor for an even kernel):
    each pixel becomes the maximum of itself and its up, left and up-left neighbours."""
    grown = mask.copy()
    grown[1:, :] = np.maximum(grown[1:, :], mask[:-1, :])
    grown[:, 1:] = np.maximum(grown[:, 1:], grown[:, :-1])
    return grown


def outline_hulls(mask: np.ndarray) -> list[np.ndarray]:
    """The convex hull (k x 2 int points, x y) of every outline OpenCV's findContours(RETR_LIST) traces.

    That is one outline per 8-connected region of nonzero pixels, and one per hole: a 4-connected region
    of zero pixels that does not reach the image border; a hole's outline runs along the region pixels
    touching it. Only the hulls are computed, since a minimum-area rectangle depends on nothing else.
    Regions come first, then holes, each in order of their first pixel (row by row).
    """
    mask = np.asarray(mask) != 0
    height, width = mask.shape
    hulls = []
    # Regions: the hull of a region is the hull of its runs' end pixels.
    ys, starts, ends = _runs(mask)
    labels = _connect_runs(ys, starts, ends, width, reach=1)
    for members in _groups(labels):
        y, s, e = ys[members], starts[members], ends[members]
        hulls.append(convex_hull(np.concatenate([np.stack([s, y], 1), np.stack([e, y], 1)])))

    # Holes: background regions (4-connected, since regions are 8-connected) away from the border.
    ys, starts, ends = _runs(~mask)
    labels = _connect_runs(ys, starts, ends, width, reach=0)
    on_border = (ys == 0) | (ys == height - 1) | (starts == 0) | (ends == width - 1)
    open_labels = np.unique(labels[on_border])
    for members in _groups(labels):
        if np.isin(labels[members[0]], open_labels):
            continue
        y, s, e = ys[members], starts[members], ends[members]
        # The pixels 4-adjacent to the hole: one step left and right of each run, and the runs shifted up and down.
        points = [np.stack(p, 1) for p in ((s - 1, y), (e + 1, y), (s, y - 1), (e, y - 1), (s, y + 1), (e, y + 1))]
        hulls.append(convex_hull(np.concatenate(points)))
    return hulls


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of True pixels: row, first column, last column (row-major order)."""
    height, width = mask.shape
    stride = width + 2
    padded = np.zeros((height, stride), bool)
    padded[:, 1:-1] = mask
    # One pass over the flattened rows: the zero columns between rows keep runs from joining across
    # rows, and runs alternate with gaps, so the changes come in (start, stop) pairs.
    flat = padded.ravel()
    changes = np.flatnonzero(flat[1:] != flat[:-1])
    starts, stops = changes[0::2], changes[1::2]
    ys = starts // stride
    return ys, starts - ys * stride, stops - ys * stride - 1


def _connect_runs(ys: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int, reach: int) -> np.ndarray:
    """A component label for each run. Runs on neighbouring rows join when their columns overlap after
    widening by `reach` (1: 8-connectivity, diagonal neighbours join; 0: 4-connectivity)."""
    count = len(ys)
    if count == 0:
        return np.zeros(0, np.int64)
    # Sort keys that never cross rows: a row's runs occupy [row * stride, row * stride + width).
    stride = width + 3
    start_keys = ys * stride + starts
    end_keys = ys * stride + ends
    # Runs on the next row that overlap run i are a contiguous slice: they are disjoint and sorted.
    first = np.searchsorted(end_keys, (ys + 1) * stride + starts - reach, side="left")
    last = np.searchsorted(start_keys, (ys + 1) * stride + ends + reach, side="right")
    counts = np.maximum(last - first, 0)
    upper = np.repeat(np.arange(count), counts)
    lower = np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    return _union(count, upper, lower)


def _union(count: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected components of a graph given as edge lists: each node labelled by its smallest member.

    Vectorised union-find: hook each edge's larger root under the smaller one, then jump pointers until
    every node points at its root; repeat until no edge joins two roots.
    """
    parent = np.arange(count)
    while True:
        root_a, root_b = parent[a], parent[b]
        differ = root_a != root_b
        if not differ.any():
            return parent
        low, high = np.minimum(root_a[differ], root_b[differ]), np.maximum(root_a[differ], root_b[differ])
        np.minimum.at(parent, high, low)
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


def _groups(labels: np.ndarray) -> list[np.ndarray]:
    """Indices of each label's members, labels in order of their first member."""
    if len(labels) == 0:
        return []
    order = np.argsort(labels, kind="stable")
    cuts = np.nonzero(np.diff(labels[order]))[0] + 1
    groups = np.split(order, cuts)
    return sorted(groups, key=lambda g: g[0])


# ---------------------------------------------------------------- hulls and rectangles

def convex_hull(points: np.ndarray) -> np.ndarray:
    """The convex hull of 2-D points, counter-clockwise in image coordinates (y down), no collinear points.

    Andrew's monotone chain. Fewer than three distinct points come back as they are (deduplicated).
    """
    unique = np.unique(np.asarray(points).reshape(-1, 2), axis=0)  # sorted by x, then y
    if len(unique) < 3:
        return unique
    pts = unique.tolist()

    def chain(sequence):
        out = []
        for p in sequence:
            while len(out) >= 2 and _cross(out[-2], out[-1], p) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = chain(pts), chain(reversed(pts))
    return np.array(lower[:-1] + upper[:-1], dtype=np.asarray(points).dtype)


def _cross(o, a, b) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def min_area_rect(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The smallest-area rectangle around the points: its 4 corners (float32, in order around it) and side lengths.

    Rotating calipers: the best rectangle has a side on one of the hull's edges, so every edge direction is
    tried. A single point or a segment gives a degenerate rectangle (a side of length 0).
    """
    hull = convex_hull(np.asarray(points, np.float64).reshape(-1, 2)).astype(np.float64)
    if len(hull) == 0:
        raise ValueError("min_area_rect needs at least one point")
    if len(hull) == 1:
        return np.repeat(hull, 4, axis=0).astype(np.float32), 0.0, 0.0
    edges = np.roll(hull, -1, axis=0) - hull
    if len(hull) == 2:
        edges = edges[:1]
    along = edges / np.linalg.norm(edges, axis=1, keepdims=True)
    across = np.stack([-along[:, 1], along[:, 0]], axis=1)
    u, v = along @ hull.T, across @ hull.T  # projections: one row per edge direction
    lengths, depths = u.max(1) - u.min(1), v.max(1) - v.min(1)
    areas = lengths * depths
    # Exact ties are common on small pixel regions (a right triangle fits two rectangles of equal area);
    # the axis-aligned one is taken then, as OpenCV mostly does (it decides by float32 rounding noise).
    tied = np.nonzero(areas <= areas.min() * (1 + 1e-9) + 1e-12)[0]
    upright = [i for i in tied if abs(along[i, 0]) < 1e-12 or abs(along[i, 1]) < 1e-12]
    best = int(upright[0] if upright else tied[0])
    a, b = along[best], across[best]
    u0, u1, v0, v1 = u[best].min(), u[best].max(), v[best].min(), v[best].max()
    corners = np.array([a * u0 + b * v0, a * u1 + b * v0, a * u1 + b * v1, a * u0 + b * v1])
    # Axis-aligned rectangles have integer corners; keep them exact (the unclip step truncates to integers).
    snapped = np.round(corners)
    corners = np.where(np.abs(corners - snapped) < 1e-9, snapped, corners)
    return corners.astype(np.float32), float(lengths[best]), float(depths[best])


def polygon_area(polygon: np.ndarray) -> float:
    """Area of a simple polygon (shoelace formula), positive whatever the winding."""
    p = np.asarray(polygon, np.float64).reshape(-1, 2)
    x, y = p[:, 0], p[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2.0


def polygon_perimeter(polygon: np.ndarray) -> float:
    """Length of a closed polygon's outline."""
    p = np.asarray(polygon, np.float64).reshape(-1, 2)
    return float(np.linalg.norm(np.roll(p, -1, axis=0) - p, axis=1).sum())


def polygon_mask(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """A height x width bool mask of a convex polygon with integer vertices, as OpenCV's fillPoly paints it:
    every pixel whose centre is inside or on the outline, plus the 8-connected line drawn along each edge."""
    p = np.asarray(polygon, np.int64).reshape(-1, 2)
    ys, xs = np.mgrid[0:height, 0:width]
    inside_left = np.ones((height, width), bool)
    inside_right = np.ones((height, width), bool)
    for (x0, y0), (x1, y1) in zip(p, np.roll(p, -1, axis=0)):
        side = (x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0)
        inside_left &= side >= 0
        inside_right &= side <= 0
    mask = inside_left | inside_right  # either winding
    for (x0, y0), (x1, y1) in zip(p, np.roll(p, -1, axis=0)):
        steps = max(abs(x1 - x0), abs(y1 - y0))
        t = np.arange(steps + 1)
        lx = x0 + _round_half_up(t * (x1 - x0), steps)
        ly = y0 + _round_half_up(t * (y1 - y0), steps)
        keep = (lx >= 0) & (lx < width) & (ly >= 0) & (ly < height)
        mask[ly[keep], lx[keep]] = True
    return mask


def _round_half_up(numerator: np.ndarray, denominator: int) -> np.ndarray:
    if denominator == 0:
        return np.zeros_like(numerator)
    return np.floor(numerator / denominator + 0.5).astype(np.int64)


# ---------------------------------------------------------------- perspective

def perspective_matrix(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 3 x 3 homography taking 4 source points to 4 target points (h33 = 1).

    Points are float32 and the system's products are rounded to float32 as OpenCV's
    getPerspectiveTransform does: the crops then sample exactly the positions the reference sampled.
    """
    src = np.asarray(source, np.float32).reshape(4, 2)
    dst = np.asarray(target, np.float32).reshape(4, 2)
    a = np.zeros((8, 8))
    b = np.zeros(8)
    for i, ((x, y), (u, v)) in enumerate(zip(src, dst)):
        a[i] = [x, y, 1, 0, 0, 0, -(x * u), -(y * u)]  # float32 products
        a[i + 4] = [0, 0, 0, x, y, 1, -(x * v), -(y * v)]
        b[i], b[i + 4] = u, v
    try:
        h = np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        raise ValueError(f"no perspective transform maps {src.tolist()} to {dst.tolist()}: "
                         "three of the points are on one line") from None
    return np.append(h, 1.0).reshape(3, 3)


# OpenCV's remap: source positions in 1/32 pixel, bicubic weights in fixed point (1/32768).
_TAB_BITS = 5
_TAB_SIZE = 1 << _TAB_BITS
_REMAP_BITS = 15
_REMAP_ONE = 1 << _REMAP_BITS


def warp_perspective_cubic(image: np.ndarray, matrix: np.ndarray, width: int, height: int) -> np.ndarray:
    """The width x height uint8 image whose pixel (x, y) is `image` sampled at matrix^-1 (x, y): bicubic
    (a = -0.75), edge pixels repeated beyond the border, OpenCV's 1/32-pixel positions and fixed-point weights."""
    if image.dtype != np.uint8:
        raise ValueError(f"warp_perspective_cubic needs a uint8 image, got {image.dtype}")
    m = _invert_3x3(np.asarray(matrix, np.float64))
    # Source positions, summed in OpenCV's order: it walks the output in blocks of about 1024 pixels and
    # adds x - block_start to each block's start value. The order decides how exact halves of 1/32 round
    # (its SIMD code fuses some multiply-adds, so about 1 value in a million still rounds the other way).
    block_h = min(16, height)
    block_w = min(1024 // block_h, width)
    xs = np.arange(width, dtype=np.float64)
    ys = np.arange(height, dtype=np.float64)[:, None]  # the sums below broadcast to height x width
    block_x = (xs // block_w) * block_w
    step = xs - block_x
    x0 = m[0, 0] * block_x + m[0, 1] * ys + m[0, 2]
    y0 = m[1, 0] * block_x + m[1, 1] * ys + m[1, 2]
    w0 = m[2, 0] * block_x + m[2, 1] * ys + m[2, 2]
    w = w0 + m[2, 0] * step
    w = np.divide(_TAB_SIZE, w, out=np.zeros_like(w), where=w != 0)
    fx = np.rint((x0 + m[0, 0] * step) * w)
    fy = np.rint((y0 + m[1, 0] * step) * w)
    limit = float(np.iinfo(np.int32).max)
    fx = np.clip(fx, -limit, limit).astype(np.int64)
    fy = np.clip(fy, -limit, limit).astype(np.int64)
    # Integer part as int16 (OpenCV stores it as short), fraction as a 1/32 table index.
    sx = np.clip(fx >> _TAB_BITS, -32768, 32767) - 1
    sy = np.clip(fy >> _TAB_BITS, -32768, 32767) - 1

    source = image if image.ndim == 3 else image[:, :, None]
    rows, cols, channels = source.shape
    sx, sy, fraction = sx.ravel(), sy.ravel(), ((fy & (_TAB_SIZE - 1)) * _TAB_SIZE + (fx & (_TAB_SIZE - 1))).ravel()
    # Only the part of the image the taps reach, one plane per channel: gathering from a plane keeps
    # numpy's loops long (a trailing axis of 3 channels makes it loop 3 values at a time).
    top, bottom = np.clip([sy.min(), sy.max() + 3], 0, rows - 1)
    left, right = np.clip([sx.min(), sx.max() + 3], 0, cols - 1)
    planes = np.ascontiguousarray(np.moveaxis(source[top : bottom + 1, left : right + 1], 2, 0))
    planes = planes.reshape(channels, -1)
    plane_w = right - left + 1
    tap_rows = [(np.clip(sy + i, 0, rows - 1) - top) * plane_w for i in range(4)]
    tap_cols = [np.clip(sx + j, 0, cols - 1) - left for j in range(4)]
    weights = _cubic_table_by_tap()
    total = np.zeros((channels, len(sx)), np.int32)  # |weights| sum to < 2 * 32768, so int32 holds 255 times that
    for i in range(4):
        for j in range(4):
            tap = np.take(planes, tap_rows[i] + tap_cols[j], axis=1).astype(np.int32)
            tap *= np.take(weights[i * 4 + j], fraction)
            total += tap
    total += 1 << (_REMAP_BITS - 1)
    total >>= _REMAP_BITS
    out = np.clip(total, 0, 255).astype(np.uint8).T.reshape(height, width, channels)
    return out if image.ndim == 3 else out[:, :, 0]


def _invert_3x3(m: np.ndarray) -> np.ndarray:
    """Inverse by the adjugate, with OpenCV's operation order (it inverts 3 x 3 matrices this way)."""
    det = (m[0, 0] * (m[1, 1] * m[2, 2] - m[1, 2] * m[2, 1])
           - m[0, 1] * (m[1, 0] * m[2, 2] - m[1, 2] * m[2, 0])
           + m[0, 2] * (m[1, 0] * m[2, 1] - m[1, 1] * m[2, 0]))
    if det == 0:
        raise ValueError("the perspective transform is singular (the box has no area)")
    d = 1.0 / det
    return np.array([
        [(m[1, 1] * m[2, 2] - m[1, 2] * m[2, 1]) * d, (m[0, 2] * m[2, 1] - m[0, 1] * m[2, 2]) * d,
         (m[0, 1] * m[1, 2] - m[0, 2] * m[1, 1]) * d],
        [(m[1, 2] * m[2, 0] - m[1, 0] * m[2, 2]) * d, (m[0, 0] * m[2, 2] - m[0, 2] * m[2, 0]) * d,
         (m[0, 2] * m[1, 0] - m[0, 0] * m[1, 2]) * d],
        [(m[1, 0] * m[2, 1] - m[1, 1] * m[2, 0]) * d, (m[0, 1] * m[2, 0] - m[0, 0] * m[2, 1]) * d,
         (m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]) * d],
    ])


@functools.lru_cache(maxsize=1)
def _cubic_table() -> np.ndarray:
    """(32 * 32) x 16 int weights for each 1/32-pixel (y, x) fraction, each set summing to exactly 32768."""
    x = np.arange(_TAB_SIZE, dtype=np.float32) * np.float32(1.0 / _TAB_SIZE)
    a = np.float32(-0.75)
    one = np.float32(1.0)
    c0 = ((a * (x + one) - 5 * a) * (x + one) + 8 * a) * (x + one) - 4 * a
    c1 = ((a + 2) * x - (a + 3)) * x * x + one
    c2 = ((a + 2) * (one - x) - (a + 3)) * (one - x) * (one - x) + one
    c3 = one - c0 - c1 - c2
    taps = np.stack([c0, c1, c2, c3], axis=1).astype(np.float32)  # 32 x 4
    table = np.rint((taps[:, None, :, None] * taps[None, :, None, :]) * np.float32(_REMAP_ONE))
    table = table.astype(np.int64).reshape(_TAB_SIZE * _TAB_SIZE, 16)
    # Rounding leaves some sums off by a little: OpenCV moves the difference onto the largest (or
    # smallest) of the four weights at taps (2..3, 2..3), scanning them in its order.
    for row in table:
        diff = int(row.sum()) - _REMAP_ONE
        if diff == 0:
            continue
        low = high = 2 * 4 + 2
        for k1 in (2, 3):
            for k2 in (2, 3):
                k = k1 * 4 + k2
                if row[k] < row[low]:
                    low = k
                elif row[k] > row[high]:
                    high = k
        if diff < 0:
            row[high] -= diff
        else:
            row[low] -= diff
    return table


@functools.lru_cache(maxsize=1)
def _cubic_table_by_tap() -> np.ndarray:
    """_cubic_table as 16 x (32 * 32) int32: one contiguous row of weights per tap."""
    return np.ascontiguousarray(_cubic_table().T.astype(np.int32))
