"""Which map points a freehand lasso encloses (vectorised even-odd rule, no Qt)."""

from __future__ import annotations

import numpy as np


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Boolean mask of ``points`` [n, 2] inside the closed ``polygon`` [m, 2].

    Ray casting along +x, one vectorised pass per polygon edge: a lasso has a few hundred
    vertices, so 65k points cost a few hundred numpy operations (~20 ms).
    """
    pts = np.asarray(points, dtype=np.float64)
    poly = np.asarray(polygon, dtype=np.float64)
    inside = np.zeros(len(pts), bool)
    if len(poly) < 3 or not len(pts):
        return inside
    x, y = pts[:, 0], pts[:, 1]
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    box = (x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1])
    idx = np.flatnonzero(box)
    if not len(idx):
        return inside
    x, y = x[idx], y[idx]
    hit = np.zeros(len(idx), bool)
    x1, y1 = poly[:, 0], poly[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    for ax, ay, bx, by in zip(x1, y1, x2, y2):
        if ay == by:
            continue
        crosses = (ay > y) != (by > y)
        xs = ax + (y - ay) * (bx - ax) / (by - ay)
        hit ^= crosses & (x < xs)
    inside[idx] = hit
    return inside
