"""A patient's pre-op / post-op / follow-up films with chosen differences between them.

The sample patients (:data:`~spine_measure.synthetic.studies.CASES`) keep their positioning
fixed by design. For evaluating landmark propagation (``docs/propagation.md``) this module
renders the same three time points with, per film, a different in-plane rotation
(positioning), magnification (pixel spacing) and shift, and a kyphosis change at follow-up
(the discs next to the treated level narrow anteriorly by ``kyphosis_change_mm``, tilting the
segment above). Ground truth stays exact: every film's ``truth`` holds its landmarks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from spine_measure.synthetic.studies import (
    DEFAULT_SEED,
    GeneratedFilm,
    PatientCase,
    render_case_film,
)

__all__ = ["SeriesVariation", "random_variation", "render_series"]


@dataclass(frozen=True)
class SeriesVariation:
    """Per time point (pre-op, post-op, follow-up): rotation (deg), magnification (relative
    to the plan's spacing; 1.1 = 10 % larger on the film), shift (mm); and the extra anterior
    disc narrowing (mm) next to the treated level at follow-up."""

    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    magnification: tuple[float, float, float] = (1.0, 1.0, 1.0)
    shift_mm: tuple[tuple[float, float], ...] = ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0))
    kyphosis_change_mm: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rotation_deg", "magnification", "shift_mm"):
            if len(getattr(self, name)) != 3:
                raise ValueError(f'Argument "{name}" needs one value per time point (3)')
        if not all(0.5 <= m <= 2.0 for m in self.magnification):
            raise ValueError(f'Argument "magnification" must be in [0.5, 2]; '
                             f"got {self.magnification}")
        if not 0.0 <= self.kyphosis_change_mm <= 6.0:
            raise ValueError(f'Argument "kyphosis_change_mm" must be in [0, 6] mm; '
                             f"got {self.kyphosis_change_mm}")


def random_variation(rng: np.random.Generator, *, max_rotation_deg: float = 6.0,
                     max_magnification: float = 0.08, max_shift_mm: float = 15.0,
                     max_kyphosis_change_mm: float = 3.0) -> SeriesVariation:
    """A variation drawn uniformly within the given limits (deterministic for a seeded rng)."""
    rot = tuple(float(x) for x in rng.uniform(-max_rotation_deg, max_rotation_deg, 3))
    mag = tuple(float(x) for x in 1.0 + rng.uniform(-max_magnification, max_magnification, 3))
    shift = tuple((float(a), float(b)) for a, b in rng.uniform(-max_shift_mm, max_shift_mm,
                                                                (3, 2)))
    return SeriesVariation(rot, mag, shift,  # type: ignore[arg-type]
                           float(rng.uniform(0.0, max_kyphosis_change_mm)))


def render_series(case: PatientCase, variation: SeriesVariation, *, seed: int = DEFAULT_SEED,
                  noise: float | None = None) -> list[GeneratedFilm]:
    """Render the case's three lateral films under ``variation`` (pre-op, post-op, follow-up).

    Each film keeps the plan's size rule (anatomy plus margins) enlarged by the shift; its
    header states the spacing it was drawn at, so calibrated measurements stay exact.
    """
    c = replace(case, followup_disc_collapse_mm=case.followup_disc_collapse_mm
                + variation.kyphosis_change_mm)
    plans = [p for p in c.films if p.view == "lateral"][:3]
    out = []
    for i, plan in enumerate(plans):
        base = plan.imager_spacing / plan.ermf
        over: dict[str, object] = {"rotation_deg": plan.rotation_deg
                                   + variation.rotation_deg[i],
                                   "spacing_mm": base / variation.magnification[i]}
        sh = variation.shift_mm[i]
        if sh != (0.0, 0.0):  # a shift = more margin on one side, less on the other
            top, ant, bot, post = (14.0, 28.0, 10.0, 8.0)
            over["margin_mm"] = (top + max(0.0, sh[0]), ant + max(0.0, sh[1]),
                                 bot + max(0.0, -sh[0]), post + max(0.0, -sh[1]))
        if noise is not None:
            over["noise"] = noise
        out.append(render_case_film(c, plan, seed, **over))
    return out
