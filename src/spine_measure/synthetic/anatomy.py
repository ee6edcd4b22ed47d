"""Geometry of synthetic spines: vertebral bodies, posterior elements and bone cement in mm.

Everything here is pure numpy and lives in a *patient frame* measured in millimetres,
points written ``(y, x)`` like ``(row, col)``: ``y`` grows caudally, ``x`` grows towards the
patient's back on a lateral film (the canonical film faces left, i.e. anterior is ``-x``) and
towards the image right on an AP film. :mod:`spine_measure.synthetic.render` maps this frame
onto a film (spacing, mirroring, rotation, translation).

Lateral bodies are built as a chain from cranial to caudal (:func:`build_lateral_spine`):

* a body is given by its depth ``D`` (posterior to anterior wall), anterior and posterior
  heights ``ha``, ``hp`` and endplate concavities ``cs``, ``ci`` (mm);
* with ``Ps`` its posterior-superior corner, ``e`` the unit vector from ``Ps`` towards
  ``As`` and ``n`` the caudal normal of ``e``: ``As = Ps + D e``, ``Pi = Ps + hp n``,
  ``Ai = As + ha n``;
* the superior endplate is the parabola ``Ps + t (As - Ps) + cs 4 t (1 - t) n``,
  ``t in [0, 1]``, so ``Ms`` (``t = 1/2``) is its true midpoint; the inferior one likewise
  bulges cranially by ``ci``;
* the disc below has anterior and posterior heights ``da``, ``dp`` measured along the caudal
  normal ``n'`` of the inferior endplate line ``Pi -> Ai``: the next ``Ps = Pi + dp n'`` and
  the next ``As`` lies on the ray ``Ps -> Ai + da n'`` at distance ``D_next``.

Corners are exact vertices of the body polygon, so the landmarks are the true corners of the
rendered body.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

__all__ = [
    "LATERAL_LANDMARKS",
    "AP_LANDMARKS",
    "LevelSpec",
    "ApLevelSpec",
    "VertebraShape",
    "LeakSpec",
    "CementSpec",
    "SpineGeometry",
    "default_lateral_levels",
    "default_ap_levels",
    "build_lateral_spine",
    "build_ap_spine",
    "cement_indicator",
    "signed_distance",
    "polyline_distance",
    "lateral_level_names",
]

LATERAL_LANDMARKS = ("As", "Ai", "Ms", "Mi", "Ps", "Pi")
AP_LANDMARKS = ("SL", "SR", "IL", "IR")

_ALL_LEVELS = [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)] + ["S1"]


def lateral_level_names(first: str = "T10", last: str = "S1") -> list[str]:
    """Level labels from ``first`` to ``last`` inclusive, cranial to caudal."""
    i0, i1 = _ALL_LEVELS.index(first), _ALL_LEVELS.index(last)
    return _ALL_LEVELS[i0 : i1 + 1]


# ----------------------------------------------------------------------------------------
# small vector helpers (points are (y, x))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / float(np.hypot(v[0], v[1]))


def _caudal_normal(e: np.ndarray) -> np.ndarray:
    """Normal of a lateral endplate direction ``e`` (posterior -> anterior) pointing caudally.

    With ``e = (sin a, -cos a)`` this is ``(cos a, sin a)``.
    """
    return np.array([-e[1], e[0]]) if e[1] < 0 else np.array([e[1], -e[0]])


def _rot(angle_rad: float) -> np.ndarray:
    """Rotation matrix acting on ``(y, x)`` column vectors (counter-clockwise on screen)."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, -s], [s, c]])


# ----------------------------------------------------------------------------------------
# specifications


@dataclass(frozen=True)
class LevelSpec:
    """Dimensions of one lateral vertebral body and the disc below it (mm).

    ``cs`` / ``ci`` are the depths of the superior / inferior endplate concavity, so
    ``hm = (ha + hp) / 2 - cs - ci`` up to the endplate tilt. ``disc_anterior`` and
    ``disc_posterior`` are ignored for the last level. S1 is drawn as the sacrum and only
    ``depth`` is used.
    """

    level: str
    depth: float
    ha: float
    hp: float
    cs: float = 0.9
    ci: float = 0.9
    disc_anterior: float = 8.0
    disc_posterior: float = 6.0
    fractured: bool = False
    treated: bool = False
    excluded: bool = False
    waist: float = 0.8  # concavity of the anterior wall, mm


@dataclass(frozen=True)
class ApLevelSpec:
    """Dimensions of one vertebral body on an AP film and the disc below it (mm).

    ``height_left`` / ``height_right`` are the heights of the left / right (image side)
    walls, ``disc_left`` / ``disc_right`` the disc heights below.
    """

    level: str
    width: float
    height_left: float
    height_right: float
    disc_left: float = 8.0
    disc_right: float = 8.0


def default_lateral_levels(first: str = "T10", last: str = "S1") -> list[LevelSpec]:
    """Typical adult dimensions, thoracic kyphosis turning into lumbar lordosis.

    Lumbar bodies 33-35 mm deep and 26-28.5 mm tall, lumbar discs 6-12 mm; the thoracic
    bodies are slightly wedged (``ha < hp``) and the lumbar discs taller anteriorly, which
    gives the gentle thoracolumbar curve.
    """
    table = {
        #        depth   ha    hp   disc_a disc_p
        "T9": (27.5, 19.5, 21.5, 5.0, 4.2),
        "T10": (28.0, 20.5, 22.0, 5.5, 4.5),
        "T11": (29.0, 22.0, 23.5, 6.0, 5.0),
        "T12": (31.0, 23.5, 25.0, 7.0, 5.5),
        "L1": (33.0, 25.5, 26.5, 8.0, 6.0),
        "L2": (34.0, 27.0, 27.5, 9.5, 6.5),
        "L3": (35.0, 28.0, 28.0, 10.5, 7.0),
        "L4": (35.0, 28.5, 27.5, 11.5, 7.0),
        "L5": (34.0, 28.5, 26.0, 12.0, 6.0),
        "S1": (36.0, 0.0, 0.0, 0.0, 0.0),
    }
    return [
        LevelSpec(lv, d, ha, hp, disc_anterior=da, disc_posterior=dp)
        for lv in lateral_level_names(first, last)
        for (d, ha, hp, da, dp) in [table[lv]]
    ]


def default_ap_levels(first: str = "T11", last: str = "L5") -> list[ApLevelSpec]:
    """AP bodies with a lumbar curve of about 22 deg (endplate Cobb).

    Each body's lateral wedge ``atan((hL - hR) / w)`` and each disc's wedge add up along the
    curve; the returned specification is symmetric above and below the apex.
    """
    widths = {"T11": 36.0, "T12": 38.0, "L1": 41.0, "L2": 43.0, "L3": 45.0, "L4": 47.0,
              "L5": 49.0}
    heights = {"T11": 22.5, "T12": 24.0, "L1": 25.5, "L2": 27.0, "L3": 28.0, "L4": 28.0,
               "L5": 27.0}
    # wedge (deg) of each body and of the disc below it; positive: taller on the left.
    body_wedge = {"T11": 0.0, "T12": 1.5, "L1": 2.5, "L2": 3.0, "L3": -1.0, "L4": -3.0,
                  "L5": -2.0}
    disc_wedge = {"T11": 1.0, "T12": 2.5, "L1": 3.0, "L2": 2.5, "L3": -3.0, "L4": -3.0,
                  "L5": 0.0}
    out = []
    for lv in lateral_level_names(first, last):
        w, h = widths[lv], heights[lv]
        dh = w * np.tan(np.radians(1.4 * body_wedge[lv]))
        dd = w * np.tan(np.radians(1.4 * disc_wedge[lv]))
        out.append(ApLevelSpec(lv, w, h + dh / 2, h - dh / 2, 8.0 + dd / 2, 8.0 - dd / 2))
    return out


@dataclass(frozen=True)
class LeakSpec:
    """A cement leak, defined in the treated body's local frame.

    ``location``: ``superior_disc`` | ``inferior_disc`` | ``anterior``.
    ``type``: ``spike`` (thin pointed tongue) or ``round`` (compact blob) for intradiscal
    leaks, ``None`` for anterior ones. ``position`` is the fraction of the body depth from the
    anterior (0) to the posterior (1) wall where an intradiscal leak leaves the endplate, or
    the fraction of the body height (0 superior, 1 inferior) for an anterior leak.
    ``size`` is the spike length or the blob radius (mm).
    """

    location: str
    type: str | None
    position: float = 0.45
    size: float = 4.5
    slant: float = 0.25


@dataclass(frozen=True)
class CementSpec:
    """Bone cement in the treated body, in the body's normalised frame.

    ``u_range``: fraction of the depth (0 anterior wall, 1 posterior wall) the main mass spans;
    ``gap_superior`` / ``gap_inferior``: distance (mm) kept from the superior / inferior
    endplate curve; 0 makes the cement fill up to the endplate (contact).
    ``distribution``: ``spongy`` (noise-thresholded, interdigitating, several components) or
    ``blocky`` (one smooth super-ellipse lump). ``seed`` drives the spongy pattern.
    """

    distribution: str
    u_range: tuple[float, float] = (0.12, 0.8)
    gap_superior: float = 0.0
    gap_inferior: float = 0.0
    leaks: tuple[LeakSpec, ...] = ()
    seed: int = 0
    mu: float = 1.7  # attenuation added by cement (film units)


# ----------------------------------------------------------------------------------------
# shapes


@dataclass
class VertebraShape:
    """One vertebra in the patient frame (mm).

    ``landmarks`` maps landmark names to ``(y, x)``; ``outline`` is the closed body polygon
    (``(N, 2)``, not repeated at the end) whose vertices include the corners;
    ``superior_curve`` runs ``Ps -> As`` (lateral) / ``SL -> SR`` (AP) and
    ``inferior_curve`` ``Pi -> Ai`` / ``IL -> IR``; ``posterior`` holds polygons of the
    posterior elements (pedicles, articular processes, spinous process) or, on AP films,
    pedicle ovals and processes.
    """

    level: str
    landmarks: dict[str, np.ndarray]
    outline: np.ndarray
    superior_curve: np.ndarray
    inferior_curve: np.ndarray
    posterior: list[np.ndarray] = field(default_factory=list)
    fractured: bool = False
    treated: bool = False
    excluded: bool = False


@dataclass
class SpineGeometry:
    """A whole spine in the patient frame (mm) plus optional cement in one body.

    ``view`` is ``lateral`` or ``ap``; ``cleft`` (optional ``(level, depth_fraction)``) draws
    an intravertebral cleft (gas, dark) in that body; ``sclerosis`` lists levels drawn with a
    dense band under the superior endplate (fresh compression).
    """

    view: str
    vertebrae: list[VertebraShape]
    cement_level: str | None = None
    cement: CementSpec | None = None
    cleft_level: str | None = None
    sclerosis: tuple[str, ...] = ()

    def vertebra(self, level: str) -> VertebraShape:
        for v in self.vertebrae:
            if v.level == level:
                return v
        raise KeyError(f"no vertebra {level!r} in the geometry")

    def all_points(self) -> np.ndarray:
        """Every outline and posterior-element vertex, ``(N, 2)`` mm."""
        pts = [v.outline for v in self.vertebrae]
        pts += [p for v in self.vertebrae for p in v.posterior]
        return np.concatenate(pts, axis=0)

    def transformed(self, func) -> SpineGeometry:
        """A copy with ``func`` (``(N, 2) -> (N, 2)``) applied to every point."""
        verts = []
        for v in self.vertebrae:
            verts.append(
                replace(
                    v,
                    landmarks={k: func(p[None])[0] for k, p in v.landmarks.items()},
                    outline=func(v.outline),
                    superior_curve=func(v.superior_curve),
                    inferior_curve=func(v.inferior_curve),
                    posterior=[func(p) for p in v.posterior],
                )
            )
        return replace(self, vertebrae=verts)


def _parabola(p0: np.ndarray, p1: np.ndarray, depth: float, normal: np.ndarray, n: int):
    t = np.linspace(0.0, 1.0, n)[:, None]
    return p0 + t * (p1 - p0) + depth * 4.0 * t * (1.0 - t) * normal


def _local_polygon(origin, e_ant, n_caud, pts_pc: Sequence[tuple[float, float]]):
    """Polygon from (posterior distance, caudal distance) pairs relative to ``origin``."""
    arr = np.asarray(pts_pc, dtype=float)
    return origin - arr[:, :1] * e_ant + arr[:, 1:2] * n_caud


def _posterior_elements(ps, e_ant, n_caud, hp, thoracic: bool) -> list[np.ndarray]:
    slope = 0.35 if thoracic else 0.1  # thoracic spinous processes point caudally
    pedicle = _local_polygon(ps, e_ant, n_caud, [(0, 0.08 * hp), (12, 0.14 * hp),
                                                 (12.5, 0.52 * hp), (0, 0.5 * hp)])
    articular = _local_polygon(
        ps, e_ant, n_caud,
        [(10, -0.05 * hp), (13, -0.32 * hp), (18, -0.34 * hp), (21, 0.1 * hp),
         (22.5, 0.7 * hp), (20, 1.08 * hp), (15, 1.1 * hp), (12, 0.7 * hp)],
    )
    L = 26.0 if thoracic else 30.0
    sp = [(19, 0.2 * hp), (19 + L * 0.5, 0.22 * hp + slope * L * 0.5),
          (19 + L, 0.3 * hp + slope * L), (19 + L + 1.5, 0.55 * hp + slope * L),
          (19 + L, 0.72 * hp + slope * L), (19 + L * 0.5, 0.8 * hp + slope * L * 0.5),
          (20, 0.85 * hp)]
    spinous = _local_polygon(ps, e_ant, n_caud, sp)
    return [pedicle, articular, spinous]


def build_lateral_spine(
    levels: Sequence[LevelSpec],
    *,
    cement_level: str | None = None,
    cement: CementSpec | None = None,
    cleft_level: str | None = None,
    sclerosis: Sequence[str] = (),
    n_curve: int = 13,
) -> SpineGeometry:
    """Build a lateral spine (canonical: facing left, upright) from level specifications.

    The chain construction is described in the module docstring. After building, the whole
    spine is rotated about its first ``Ps`` so that the line from the first to the last
    ``Ps`` is vertical (an upright patient), then translated so that this point is the origin.

    Examples
    --------
    >>> g = build_lateral_spine(default_lateral_levels("L1", "L3"))
    >>> [v.level for v in g.vertebrae]
    ['L1', 'L2', 'L3']
    >>> v = g.vertebrae[0]
    >>> round(float(np.hypot(*(v.landmarks["As"] - v.landmarks["Ai"]))), 6)
    25.5
    """
    if not levels:
        raise ValueError('Argument "levels" must name at least one level; got none')
    ps = np.array([0.0, 0.0])
    e = _unit(np.array([np.sin(np.radians(-8.0)), -np.cos(np.radians(-8.0))]))
    verts: list[VertebraShape] = []
    for i, spec in enumerate(levels):
        n = _caudal_normal(e)
        As = ps + spec.depth * e
        if spec.level == "S1":
            sup = np.stack([ps, As])
            outline = _local_polygon(
                ps, e, n, [(0, 0), (-spec.depth, 0), (-spec.depth + 0.8, 24.0),
                           (-spec.depth + 3.0, 26.0), (-spec.depth + 8, 44),
                           (-spec.depth + 15, 56), (-6, 58), (1.5, 42), (3.0, 26.0),
                           (1.0, 24.0)])
            crest = _local_polygon(ps, e, n, [(4, 2), (14, -6), (22, 4), (24, 40), (10, 48)])
            verts.append(VertebraShape("S1", {"As": As, "Ps": ps.copy()}, outline, sup,
                                       sup.copy(), [crest], spec.fractured, spec.treated,
                                       spec.excluded))
            break
        Pi = ps + spec.hp * n
        Ai = As + spec.ha * n
        e_inf = _unit(Ai - Pi)
        n_inf = _caudal_normal(e_inf)
        sup = _parabola(ps, As, spec.cs, n, n_curve)
        inf = _parabola(Pi, Ai, -spec.ci, n_inf, n_curve)
        Ms = sup[n_curve // 2].copy()
        Mi = inf[n_curve // 2].copy()
        # anterior wall As -> Ai with a slight waist (posterior bulge), posterior wall straight
        ant = _parabola(As, Ai, spec.waist, -e, 7)[1:-1]
        outline = np.concatenate([sup, ant, inf[::-1], _parabola(Pi, ps, 0.0, e, 5)[1:-1]])
        thoracic = spec.level.startswith("T")
        verts.append(
            VertebraShape(
                spec.level,
                {"As": As, "Ai": Ai, "Ms": Ms, "Mi": Mi, "Ps": ps.copy(), "Pi": Pi},
                outline, sup, inf, _posterior_elements(ps, e, n, spec.hp, thoracic),
                spec.fractured, spec.treated, spec.excluded,
            )
        )
        if i + 1 < len(levels):
            ps_next = Pi + spec.disc_posterior * n_inf
            a_raw = Ai + spec.disc_anterior * n_inf
            e = _unit(a_raw - ps_next)
            ps = ps_next
    geom = SpineGeometry("lateral", verts, cement_level, cement, cleft_level, tuple(sclerosis))
    # upright: first Ps -> last Ps vertical
    p0 = verts[0].landmarks["Ps"]
    p1 = verts[-1].landmarks["Ps"]
    ang = np.arctan2(p1[1] - p0[1], p1[0] - p0[0])  # angle of the axis from +y
    R = _rot(-ang)
    return geom.transformed(lambda p: (p - p0) @ R.T)


def build_ap_spine(levels: Sequence[ApLevelSpec], *, n_curve: int = 9) -> SpineGeometry:
    """Build an AP (frontal) spine, cranial to caudal, as a chain like the lateral one.

    ``SR = SL + w e``, ``IL = SL + hL n``, ``IR = SR + hR n`` (``e`` the unit vector from
    ``SL`` to ``SR``, ``n`` its caudal normal); the next ``SL = IL + dL n'`` and the next
    ``SR`` lies on the ray towards ``IR + dR n'``. The result is rotated so that the line
    joining the midpoints of the first and last superior endplates is vertical.
    """
    if not levels:
        raise ValueError('Argument "levels" must name at least one level; got none')
    sl = np.array([0.0, 0.0])
    e = np.array([0.0, 1.0])
    verts: list[VertebraShape] = []
    for i, spec in enumerate(levels):
        n = np.array([e[1], -e[0]])  # caudal normal of a left-to-right direction
        sr = sl + spec.width * e
        il = sl + spec.height_left * n
        ir = sr + spec.height_right * n
        e_inf = _unit(ir - il)
        n_inf = np.array([e_inf[1], -e_inf[0]])
        sup = _parabola(sl, sr, 0.7, n, n_curve)
        inf = _parabola(il, ir, -0.7, n_inf, n_curve)
        right = _parabola(sr, ir, 1.2, -e, 7)[1:-1]
        left = _parabola(il, sl, 1.2, e, 7)[1:-1]
        outline = np.concatenate([sup, right, inf[::-1], left])
        h = 0.5 * (spec.height_left + spec.height_right)
        c = 0.5 * (sl + sr) + 0.5 * h * n
        post: list[np.ndarray] = []
        for side in (-1.0, 1.0):  # pedicle ovals, upper-outer part of the body
            ctr = c + side * 0.3 * spec.width * e - 0.18 * h * n
            t = np.linspace(0, 2 * np.pi, 24, endpoint=False)[:, None]
            post.append(ctr + 4.0 * np.cos(t) * e + 6.0 * np.sin(t) * n)
            tp = c + side * 0.5 * spec.width * e - 0.1 * h * n
            post.append(_local_polygon(tp, -side * e, n, [(0, -3), (14, -2.5), (16, 1),
                                                           (14, 3.5), (0, 4)]))
        t = np.linspace(0, 2 * np.pi, 20, endpoint=False)[:, None]
        post.append(c + 0.35 * h * n + 3.0 * np.cos(t) * e + 7.0 * np.sin(t) * n)
        verts.append(VertebraShape(spec.level, {"SL": sl.copy(), "SR": sr, "IL": il, "IR": ir},
                                   outline, sup, inf, post))
        if i + 1 < len(levels):
            nxt = levels[i + 1]
            sl_next = il + spec.disc_left * n_inf - 0.5 * (nxt.width - spec.width) * e_inf
            r_raw = ir + spec.disc_right * n_inf + 0.5 * (nxt.width - spec.width) * e_inf
            e = _unit(r_raw - sl_next)
            sl = sl_next
    geom = SpineGeometry("ap", verts)
    m0 = 0.5 * (verts[0].landmarks["SL"] + verts[0].landmarks["SR"])
    m1 = 0.5 * (verts[-1].landmarks["IL"] + verts[-1].landmarks["IR"])
    ang = np.arctan2(m1[1] - m0[1], m1[0] - m0[0])
    R = _rot(-ang)
    return geom.transformed(lambda p: (p - m0) @ R.T)


# ----------------------------------------------------------------------------------------
# distances


def signed_distance(points: np.ndarray, polygon: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """Signed Euclidean distance from ``points`` ``(N, 2)`` to a closed ``polygon`` ``(M, 2)``.

    Negative inside, positive outside. Distance to a segment ``a -> b``:
    ``|p - a - t (b - a)|`` with ``t = clip((p - a).(b - a) / |b - a|^2, 0, 1)``; inside is the
    even-odd crossing rule.

    >>> sq = np.array([[0., 0.], [0., 2.], [2., 2.], [2., 0.]])
    >>> signed_distance(np.array([[1., 1.], [1., 3.]]), sq).tolist()
    [-1.0, 1.0]
    """
    points = np.asarray(points, dtype=float)
    a = np.asarray(polygon, dtype=float)
    b = np.roll(a, -1, axis=0)
    ab = b - a
    ab2 = np.maximum((ab * ab).sum(1), 1e-300)
    out = np.empty(len(points))
    for s in range(0, len(points), chunk):
        p = points[s : s + chunk]
        ap = p[:, None, :] - a[None]
        t = np.clip((ap * ab).sum(-1) / ab2, 0.0, 1.0)
        d = np.hypot(ap[..., 0] - t * ab[:, 0], ap[..., 1] - t * ab[:, 1]).min(1)
        # even-odd rule, crossing a horizontal ray towards +x
        y, x = p[:, 0:1], p[:, 1:2]
        ya, xa, yb, xb = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
        cond = (ya > y) != (yb > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = xa + (y - ya) * (xb - xa) / (yb - ya)
        inside = (cond & (x < xc)).sum(1) % 2 == 1
        out[s : s + chunk] = np.where(inside, -d, d)
    return out


def polyline_distance(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """Unsigned distance from ``points`` ``(N, 2)`` to an open ``polyline`` ``(M, 2)``."""
    points = np.asarray(points, dtype=float)
    a = np.asarray(polyline, dtype=float)[:-1]
    ab = np.asarray(polyline, dtype=float)[1:] - a
    ab2 = np.maximum((ab * ab).sum(1), 1e-300)
    ap = points[:, None, :] - a[None]
    t = np.clip((ap * ab).sum(-1) / ab2, 0.0, 1.0)
    return np.hypot(ap[..., 0] - t * ab[:, 0], ap[..., 1] - t * ab[:, 1]).min(1)


# ----------------------------------------------------------------------------------------
# cement


def _body_frame(v: VertebraShape):
    """Origin (mid posterior wall), unit anterior and caudal axes of a lateral body."""
    lm = v.landmarks
    pmid = 0.5 * (lm["Ps"] + lm["Pi"])
    amid = 0.5 * (lm["As"] + lm["Ai"])
    e_ant = _unit(amid - pmid)
    n_caud = _caudal_normal(e_ant)
    return pmid, e_ant, n_caud


def _random_field(seed: int, n: int = 48, wavelength: tuple[float, float] = (2.0, 6.0)):
    rng = np.random.default_rng(seed)
    lam = rng.uniform(*wavelength, n)
    theta = rng.uniform(0, np.pi, n)
    k = (2 * np.pi / lam)[:, None] * np.stack([np.sin(theta), np.cos(theta)], 1)
    phase = rng.uniform(0, 2 * np.pi, n)
    amp = 1.0 / np.sqrt(n / 2.0)

    def f(pts: np.ndarray) -> np.ndarray:
        return amp * np.cos(pts @ k.T + phase).sum(1)

    return f


def cement_indicator(geom: SpineGeometry, points: np.ndarray) -> np.ndarray:
    """Boolean: is each patient-frame point ``(N, 2)`` (mm) inside the cement?

    The main mass lives between the endplate curves of the treated body: with ``s`` the
    anterior-posterior coordinate (mm from the posterior wall towards the anterior wall),
    ``t`` the caudal coordinate and ``t_sup(s)``, ``t_inf(s)`` the endplate curves, the band
    is ``t_sup + gap_sup <= t <= t_inf - gap_inf``. A blocky mass is the super-ellipse
    ``|xi|^3 + |eta|^8 <= 1`` in the normalised band (flat towards the endplates); a spongy
    one thresholds
    ``b + 0.5 f(s, t) clip(1.25 - b, 0, 1)`` at 0.3, ``b = 1 - |xi|^2.2 - 0.6 |eta|^4``, with
    ``f`` a smooth random field (wavelengths 2-6 mm): a solid core, an interdigitating border.
    Leaks add a tapered tongue (spike), a disc (round) or an ellipse
    (anterior) outside the body.
    """
    spec = geom.cement
    if spec is None or geom.cement_level is None:
        return np.zeros(len(points), dtype=bool)
    v = geom.vertebra(geom.cement_level)
    o, e_ant, n_caud = _body_frame(v)
    rel = np.asarray(points, dtype=float) - o
    s = rel @ e_ant
    t = rel @ n_caud

    def curve_t(curve):
        cs = (curve - o) @ e_ant
        ct = (curve - o) @ n_caud
        order = np.argsort(cs)
        return cs[order], ct[order]

    s_sup, t_sup_pts = curve_t(v.superior_curve)
    s_inf, t_inf_pts = curve_t(v.inferior_curve)
    t_sup = np.interp(s, s_sup, t_sup_pts)
    t_inf = np.interp(s, s_inf, t_inf_pts)
    depth = float(min(s_sup[-1], s_inf[-1]))  # anterior wall
    u = 1.0 - s / depth  # 0 anterior wall, 1 posterior wall
    top = t_sup + spec.gap_superior
    bot = t_inf - spec.gap_inferior
    in_band = (t >= top) & (t <= bot) & (u >= 0.02) & (u <= 0.98)
    u0, u1 = spec.u_range
    xi = (u - 0.5 * (u0 + u1)) / (0.5 * (u1 - u0))
    half = np.maximum(0.5 * (bot - top), 1e-6)
    eta = (t - 0.5 * (top + bot)) / half
    if spec.distribution == "blocky":
        # flatten towards the band edges that must be touched
        p_eta = 8.0
        main = (np.abs(xi) ** 3 + np.abs(eta) ** p_eta) <= 1.0
    else:
        f = _random_field(spec.seed)
        local = np.stack([t, s], 1)
        base = 1.0 - np.abs(xi) ** 2.2 - 0.6 * np.abs(eta) ** 4
        val = base + 0.5 * f(local) * np.clip(1.25 - base, 0.0, 1.0)
        main = val > 0.3
    mask = main & in_band

    for leak in spec.leaks:
        if leak.location in ("superior_disc", "inferior_disc"):
            s0 = depth * (1.0 - leak.position)
            if leak.location == "superior_disc":
                t_edge = float(np.interp(s0, s_sup, t_sup_pts))
                d = t_edge - t  # distance beyond the endplate, into the disc
            else:
                t_edge = float(np.interp(s0, s_inf, t_inf_pts))
                d = t - t_edge
            if leak.type == "spike":
                L = leak.size
                hw = 1.1 * np.clip(1.0 - d / L, 0.0, 1.0)
                lateral = s - (s0 + leak.slant * np.maximum(d, 0.0))
                m = (d >= -2.5) & (d <= L) & (np.abs(lateral) <= np.where(d < 0, 1.2, hw))
            else:
                r = leak.size
                ctr_d = 0.75 * r
                m = np.hypot(d - ctr_d, s - s0) <= r
                m |= (d >= -2.5) & (d <= ctr_d) & (np.abs(s - s0) <= 0.6 * r)
        elif leak.location == "anterior":
            tc = (1 - leak.position) * float(np.interp(depth, s_sup, t_sup_pts)) + \
                leak.position * float(np.interp(depth, s_inf, t_inf_pts))
            r = leak.size
            m = ((s - depth - 0.35 * r) / (0.8 * r)) ** 2 + ((t - tc) / (1.25 * r)) ** 2 <= 1.0
            m &= s >= depth - 3.0
        else:
            raise ValueError(f"cement leak location {leak.location!r} is not supported")
        mask |= m
    return mask
