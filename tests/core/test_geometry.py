"""Pure geometry: physical distances, endplate lines and the anatomical angle sign."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spine_measure.geometry import (
    DegenerateGeometryError,
    Line,
    distance,
    endplate_line,
    line_through,
    polygon_area,
    signed_endplate_angle,
    to_physical,
    unsigned_line_angle,
)


def test_distance_345_and_anisotropic_spacing():
    assert distance((0, 0), (3, 4)) == 5.0
    # rows 0.5 mm, cols 0.25 mm: (6 rows, 8 cols) -> (3 mm, 2 mm) -> sqrt(13)
    assert distance((1, 1), (7, 9), (0.5, 0.25)) == pytest.approx(math.sqrt(13), abs=1e-12)
    assert to_physical([[2, 4]], (0.5, 0.25)).tolist() == [[1.0, 1.0]]
    with pytest.raises(ValueError, match='Argument "spacing"'):
        distance((0, 0), (1, 1), (0.0, 1.0))


def test_endplate_line_uses_the_two_corners_oriented_posterior_to_anterior():
    pts = {"Ps": (10, 0), "Ms": (14, 15), "As": (10, 30)}  # sagging middle point ignored
    line = endplate_line(pts, "superior", None, level="L1")
    assert line.start.tolist() == [10.0, 0.0] and line.end.tolist() == [10.0, 30.0]
    assert line.direction.tolist() == [0.0, 1.0]
    with pytest.raises(DegenerateGeometryError, match="L1: inferior endplate needs Pi and Ai"):
        endplate_line(pts, "inferior", None, level="L1")
    with pytest.raises(DegenerateGeometryError, match="L1 superior endplate: its two points "
                                                      "coincide"):
        endplate_line({"Ps": (3, 3), "As": (3, 3)}, "superior", None, level="L1")


def _line(p, q):
    return Line(np.asarray(p, float), np.asarray(q, float))


def test_signed_angle_hand_calculation_kyphosis_positive():
    # Facing +col, cranial = -row. Superior endplate drops 10 over a 20 deep body, inferior
    # flat: anterior height 10 < posterior 20 -> anterior wedge -> +atan(10/20) = 26.565 deg.
    sup = _line((0, 0), (10, 20))
    inf = _line((20, 0), (20, 20))
    expected = math.degrees(math.atan2(10, 20))
    assert signed_endplate_angle(sup, inf) == pytest.approx(expected, abs=1e-12)
    # lordotic: superior rises 10 anteriorly -> lines diverge anteriorly -> negative
    sup2 = _line((10, 0), (0, 20))
    assert signed_endplate_angle(sup2, inf) == pytest.approx(-expected, abs=1e-12)


@pytest.mark.parametrize("transform", [
    lambda p: p * np.array([1, -1]),                     # mirror left-right
    lambda p: p * np.array([-1, 1]),                     # upside down mirror
    lambda p: p[::-1] if p.ndim == 1 else p[:, ::-1],    # transpose (mirror across diagonal)
    lambda p: p @ np.array([[0.6, -0.8], [0.8, 0.6]]).T,  # rotation by 53.13 deg
    lambda p: 3.5 * p + 17.0,                            # scale + translate
])
def test_signed_angle_independent_of_image_axes(transform):
    sup, inf = _line((0, 0), (10, 20)), _line((20, 0), (20, 20))
    want = signed_endplate_angle(sup, inf)
    t = lambda ln: Line(transform(ln.start), transform(ln.end))  # noqa: E731
    assert signed_endplate_angle(t(sup), t(inf)) == pytest.approx(want, abs=1e-10)


def test_signed_angle_degenerate_cases():
    with pytest.raises(DegenerateGeometryError, match="opposite directions"):
        signed_endplate_angle(_line((0, 0), (0, 20)), _line((20, 20), (20, 0)))
    with pytest.raises(DegenerateGeometryError, match="cannot tell cranial from caudal"):
        signed_endplate_angle(_line((0, 0), (0, 20)), _line((0, 30), (0, 50)))
    with pytest.raises(DegenerateGeometryError, match="coincide"):
        line_through((1, 1), (1, 1))


def test_unsigned_angle_and_polygon_area():
    a = _line((0, 0), (0, 10))
    b = _line((0, 0), (-10, 10 * math.sqrt(3)))  # rises 30 deg in image terms
    assert unsigned_line_angle(a, b) == pytest.approx(30.0, abs=1e-12)
    assert unsigned_line_angle(b, a) == pytest.approx(30.0, abs=1e-12)
    # 3 x 4 rectangle, then 0.5 x 2 mm pixels: 12 px^2 -> 12 mm^2
    assert polygon_area([(0, 0), (0, 4), (3, 4), (3, 0)]) == 12.0
    assert polygon_area([(0, 0), (0, 4), (3, 4), (3, 0)], (0.5, 2.0)) == pytest.approx(12.0)
