"""Zones: named polygons in frame pixels. An object is in a zone when the middle of its box's
bottom edge (where it stands) is inside the polygon; an event says which zone."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgekit.errors import UsageError

FLAG = "--events-filter zone"


@dataclass(frozen=True)
class Zone:
    name: str
    points: tuple[tuple[float, float], ...]

    def contains(self, box: Sequence[float]) -> bool:
        """Whether a box (x1, y1, x2, y2) stands in the zone (its bottom-centre point)."""
        import cv2

        point = ((box[0] + box[2]) / 2, box[3])
        polygon = np.array(self.points, np.float32).reshape(-1, 1, 2)
        return cv2.pointPolygonTest(polygon, (float(point[0]), float(point[1])), False) >= 0

    def check_inside(self, width: int, height: int) -> None:
        """A zone reaching outside the frame is a mistake (the frame's size, or x and y
        swapped): refused in one line."""
        for x, y in self.points:
            if not (0 <= x <= width and 0 <= y <= height):
                raise UsageError(f"{FLAG} {self.name}: the point {x:g},{y:g} is outside the "
                                 f"{width}x{height} frame; zones are in frame pixels")


def parse_zone(text: str) -> Zone:
    """``NAME=x1,y1,x2,y2,x3,y3[,...]``: a polygon of three points or more, in frame pixels."""
    name, sep, coords = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise UsageError(f"{FLAG} {text!r}: write NAME=x1,y1,x2,y2,x3,y3 (frame pixels)")
    try:
        values = [float(v) for v in coords.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{FLAG} {name}: the corners are numbers, x1,y1,x2,y2,...: "
                         f"{coords!r}") from None
    if len(values) % 2 or not all(np.isfinite(values)):
        raise UsageError(f"{FLAG} {name}: give x,y pairs of finite numbers, not {coords!r}")
    points = tuple((values[i], values[i + 1]) for i in range(0, len(values), 2))
    if len(set(points)) < 3:
        raise UsageError(f"{FLAG} {name}: a zone is a polygon of three points or more; "
                         f"this has {len(set(points))}")
    return Zone(name, points)


def zone_of(box: Sequence[float], zones: Sequence[Zone]) -> str | None:
    """The first zone the box stands in (None: none, or no zones given)."""
    return next((z.name for z in zones if z.contains(box)), None)
