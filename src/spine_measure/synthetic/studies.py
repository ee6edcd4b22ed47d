"""The catalogue of synthetic sample patients and the writer of ``sample_dicoms/``.

Each :class:`PatientCase` is one treated vertebra followed over three lateral films (pre-op,
immediate post-op, last follow-up) and, for one patient, an AP film with a scoliotic curve.
:func:`generate_sample_set` renders every film, writes ``<id>/<id>_<time point>.dcm`` with its
``.truth.json`` and ``.cement.png`` ground truth (format: ``docs/sample_data.md``), the
clinical table ``clinical.csv`` and ``README.md`` (a table of every file).

The fracture of the index vertebra is described by a *loss* ``x`` per time point:

* ``wedge``: ``ha = ha0 (1 - x)``, posterior wall intact;
* ``biconcave``: ``ha = ha0 (1 - x / 2)`` and both endplate concavities deepened by
  ``x hp0 / 2`` (so the middle height drops by about ``x hp0``).

Recompression at follow-up (docs/measurements.md: height loss >= 15 % or kyphotic-angle increase
>= 10 deg) follows from the losses: for a wedge, the anterior height loss is
``(x_followup - x_postop) / (1 - x_postop)``.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import logging
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from spine_measure.synthetic.anatomy import (
    CementSpec,
    LeakSpec,
    LevelSpec,
    SpineGeometry,
    build_ap_spine,
    build_lateral_spine,
    default_ap_levels,
    default_lateral_levels,
    polyline_distance,
)
from spine_measure.synthetic.dicom import FilmHeader, deterministic_uid, format_ds, write_film
from spine_measure.synthetic.render import Film, RenderOptions, render_film

__all__ = [
    "DEFAULT_SEED",
    "TRUTH_SCHEMA",
    "FilmPlan",
    "PatientCase",
    "CASES",
    "GeneratedFilm",
    "case_geometry",
    "render_case_film",
    "generate_sample_set",
    "expected_calibration",
    "contact_distances_mm",
]

log = logging.getLogger(__name__)

DEFAULT_SEED = 20240311
TRUTH_SCHEMA = "spine_measure.truth/1"
CONTACT_TOLERANCE_MM = 1.0


@dataclass(frozen=True)
class FilmPlan:
    """One film of a case: time point, view, pose, encoding and calibration attributes.

    ``calibration`` selects the header attributes: ``ermf`` (ImagerPixelSpacing and
    EstimatedRadiographicMagnificationFactor), ``ips`` (ImagerPixelSpacing only),
    ``ps_calibrated`` (also PixelSpacing with PixelSpacingCalibrationType GEOMETRY),
    ``ps_only`` (a CR object with a valid PixelSpacing and nothing else), ``zero_ps`` (a CR
    object with PixelSpacing ``0\\0`` and nothing else).
    ``imager_spacing`` is ImagerPixelSpacing (mm); the film is drawn at the spacing the header
    implies in the patient plane (docs/calibration.md), or at ``imager_spacing / ermf`` when it
    implies none.
    """

    time_point: str
    days: int  # after the pre-op film
    transfer_syntax: str = "explicit"
    polarity: str = "MONOCHROME2"
    facing: str = "left"
    rotation_deg: float = 0.0
    calibration: str = "ermf"
    imager_spacing: float = 0.3
    ermf: float = 1.12
    bits_stored: int = 12
    view: str = "lateral"
    noise: float = 0.6

    @property
    def suffix(self) -> str:
        return self.time_point + ("_ap" if self.view == "ap" else "")


@dataclass(frozen=True)
class PatientCase:
    """One synthetic patient: demographics, the index fracture, cement and films."""

    patient_id: str
    level: str
    age: int
    sex: str
    bmi: float
    bmd_t_score: float
    procedure: str
    approach: str
    cement_volume_ml: float
    anti_osteoporosis_therapy: bool
    brace: bool
    preop_date: str
    fracture: str  # wedge | biconcave
    loss: dict[str, float]  # time point -> loss fraction x
    cement: CementSpec
    findings: dict[str, object]
    films: tuple[FilmPlan, ...]
    levels: tuple[str, str] = ("T10", "L4")
    size: float = 1.0
    excluded_neighbour: tuple[str, float] | None = None  # (level, old wedge loss)
    followup_disc_collapse_mm: float = 0.0  # anterior narrowing of the index's discs
    followup_new_fracture: tuple[str, float] | None = None  # adjacent fracture at follow-up
    ivc_cleft: bool = False
    summary: str = ""


def _plans(ts: tuple[str, str, str], days: tuple[int, int], **kw) -> tuple[FilmPlan, ...]:
    common = {k: v for k, v in kw.items() if not k.startswith("f_")}
    per = [{k[2:]: v[i] for k, v in kw.items() if k.startswith("f_")} for i in range(3)]
    tps = ("preop", "postop", "followup")
    out = []
    for i, tp in enumerate(tps):
        d = 0 if i == 0 else days[i - 1]
        args = {**common, **per[i]}
        out.append(FilmPlan(tp, d, transfer_syntax=ts[i], **args))
    return tuple(out)


def _findings(ivc, disruption, fascia, goutallier, oedema):
    return {"ivc": ivc, "endplate_disruption": disruption, "posterior_fascia_oedema": fascia,
            "goutallier_grade": goutallier, "bone_marrow_oedema": oedema}


CASES: tuple[PatientCase, ...] = (
    PatientCase(
        "SM001", "L1", 72, "F", 23.4, -3.1, "PVP", "bilateral", 4.5, True, True, "2023-03-14",
        "wedge", {"preop": 0.35, "postop": 0.15, "followup": 0.17},
        CementSpec("spongy", (0.1, 0.85), 0.0, 0.0, (), seed=11),
        _findings(False, False, True, 1, False),
        _plans(("explicit", "j2k", "rle"), (2, 212), imager_spacing=0.28, ermf=1.12,
               f_calibration=("ermf", "ermf", "ps_only")),
        levels=("T10", "L4"), size=1.0,
        summary="wedge L1, spongy, NPEC none, no leak, stable; follow-up is a CR export with "
                "PixelSpacing only",
    ),
    PatientCase(
        "SM002", "T12", 79, "F", 21.1, -3.8, "PKP", "bilateral", 3.8, False, False, "2023-06-02",
        "wedge", {"preop": 0.40, "postop": 0.12, "followup": 0.35},
        CementSpec("blocky", (0.15, 0.75), 3.0, 0.0,
                   (LeakSpec("inferior_disc", "spike", 0.45, 4.6, 0.3),), seed=12),
        _findings(True, True, True, 3, True),
        _plans(("j2k", "j2k", "rle"), (1, 301), polarity="MONOCHROME1", facing="right",
               imager_spacing=0.32, ermf=1.10),
        levels=("T9", "L3"), size=0.95, followup_new_fracture=("T11", 0.27), ivc_cleft=True,
        summary="wedge T12 with IVC, blocky, NPEC superior, spike leak into the inferior "
                "disc, recompression (height loss) and a new adjacent T11 fracture",
    ),
    PatientCase(
        "SM003", "L2", 66, "M", 27.9, -2.6, "PVP", "unilateral", 3.0, True, False, "2023-09-20",
        "wedge", {"preop": 0.30, "postop": 0.12, "followup": 0.14},
        CementSpec("spongy", (0.12, 0.8), 0.0, 3.5,
                   (LeakSpec("superior_disc", "round", 0.4, 2.2),), seed=13),
        _findings(False, False, False, 2, False),
        _plans(("rle", "explicit", "jpegls"), (3, 190),
               f_rotation_deg=(4.0, -2.0, 3.0), f_calibration=("ermf", "ps_calibrated", "ermf"),
               imager_spacing=0.3, ermf=1.15),
        levels=("T11", "L5"), size=1.04,
        summary="rotated films, wedge L2, spongy, NPEC inferior, round leak into the superior "
                "disc, stable; post-op film calibrated by PixelSpacing (GEOMETRY)",
    ),
    PatientCase(
        "SM004", "L3", 81, "F", 19.8, -4.0, "PKP", "bilateral", 5.2, False, True, "2024-01-09",
        "wedge", {"preop": 0.38, "postop": 0.20, "followup": 0.40},
        CementSpec("blocky", (0.06, 0.7), 3.0, 3.0,
                   (LeakSpec("anterior", None, 0.5, 3.5),), seed=14),
        _findings(True, False, True, 4, True),
        _plans(("jpegls", "explicit", "j2k"), (1, 365), facing="right",
               f_rotation_deg=(-3.0, -3.0, -2.0), imager_spacing=0.33, ermf=1.1, bits_stored=14),
        levels=("T12", "S1"), size=0.97, excluded_neighbour=("L2", 0.22),
        summary="wedge L3 next to an old L2 fracture (excluded), blocky, NPEC both, anterior "
                "leak, recompression (height loss)",
    ),
    PatientCase(
        "SM005", "L4", 69, "F", 25.6, -2.9, "PVP", "bilateral", 4.0, True, False, "2024-02-27",
        "biconcave", {"preop": 0.35, "postop": 0.10, "followup": 0.12},
        CementSpec("spongy", (0.1, 0.85), 0.0, 0.0,
                   (LeakSpec("superior_disc", "spike", 0.55, 6.0, -0.25),), seed=15),
        _findings(False, True, False, 2, False),
        _plans(("explicit", "rle", "explicit"), (2, 250), calibration="ips",
               imager_spacing=0.3),
        levels=("T12", "S1"), size=1.02,
        summary="biconcave L4, spongy, NPEC none, spike leak into the superior disc, stable; "
                "ImagerPixelSpacing only; AP film with a scoliotic curve",
    ),
    PatientCase(
        "SM006", "T11", 75, "M", 24.3, -3.3, "PVP", "unilateral", 2.8, False, True, "2024-04-16",
        "wedge", {"preop": 0.30, "postop": 0.10, "followup": 0.22},
        CementSpec("spongy", (0.12, 0.8), 0.0, 0.0,
                   (LeakSpec("inferior_disc", "round", 0.5, 2.3),), seed=16),
        _findings(True, False, False, 1, True),
        _plans(("explicit", "rle", "jpegls"), (1, 420), facing="right",
               f_polarity=("MONOCHROME2", "MONOCHROME2", "MONOCHROME1"),
               f_rotation_deg=(2.5, 0.0, 1.5), imager_spacing=0.3, ermf=1.2),
        levels=("T9", "L3"), size=0.98, followup_disc_collapse_mm=2.8, ivc_cleft=True,
        summary="wedge T11, spongy, NPEC none, round leak into the inferior disc, "
                "recompression by kyphosis progression (height loss < 15 %)",
    ),
    PatientCase(
        "SM007", "L1", 62, "M", 29.4, -2.4, "PKP", "bilateral", 4.8, True, False, "2024-05-21",
        "biconcave", {"preop": 0.30, "postop": 0.10, "followup": 0.11},
        CementSpec("blocky", (0.15, 0.8), 0.0, 3.0, (), seed=17),
        _findings(False, False, False, 0, False),
        _plans(("j2k", "jpegls", "explicit"), (2, 185),
               f_calibration=("ermf", "ermf", "zero_ps"), imager_spacing=0.3, ermf=1.12,
               bits_stored=14),
        levels=("T10", "L4"), size=1.05,
        summary="biconcave L1, blocky, NPEC inferior, no leak, stable; follow-up is a CR "
                "export with PixelSpacing 0\\0 (uncalibrated)",
    ),
)

AP_PLAN = FilmPlan("preop", 0, transfer_syntax="jpegls", calibration="ermf", imager_spacing=0.33,
                   ermf=1.1, view="ap")
AP_PATIENT = "SM005"


# ----------------------------------------------------------------------------------------
# geometry of a case at one time point


def _level_specs(case: PatientCase, time_point: str, rng: np.random.Generator) -> list[LevelSpec]:
    specs = default_lateral_levels(*case.levels)
    out = []
    for s in specs:
        j = 1.0 + 0.02 * rng.standard_normal()
        k = case.size
        s = replace(s, depth=s.depth * k * j, ha=s.ha * k * j, hp=s.hp * k * j,
                    disc_anterior=s.disc_anterior * k, disc_posterior=s.disc_posterior * k)
        out.append(s)
    idx = [s.level for s in out].index(case.level)
    x = case.loss[time_point]
    s = out[idx]
    if case.fracture == "wedge":
        s = replace(s, ha=s.ha * (1.0 - x), cs=s.cs + 0.4)
    else:
        s = replace(s, ha=s.ha * (1.0 - 0.5 * x), cs=s.cs + 0.5 * x * s.hp,
                    ci=s.ci + 0.5 * x * s.hp)
    out[idx] = replace(s, fractured=True, treated=time_point != "preop")
    if case.excluded_neighbour is not None:
        lv, loss = case.excluded_neighbour
        i = [q.level for q in out].index(lv)
        out[i] = replace(out[i], ha=out[i].ha * (1.0 - loss), fractured=True, excluded=True)
    if time_point == "followup" and case.followup_new_fracture is not None:
        lv, loss = case.followup_new_fracture
        i = [q.level for q in out].index(lv)
        out[i] = replace(out[i], ha=out[i].ha * (1.0 - loss), fractured=True)
    if time_point == "followup" and case.followup_disc_collapse_mm:
        for i in (idx - 1, idx):
            if 0 <= i < len(out):
                out[i] = replace(out[i], disc_anterior=out[i].disc_anterior
                                 - case.followup_disc_collapse_mm)
    return out


def _case_rng(seed: int, case: PatientCase, *extra: int) -> np.random.Generator:
    return np.random.default_rng([seed, int(case.patient_id[2:]), *extra])


def case_geometry(case: PatientCase, time_point: str, seed: int = DEFAULT_SEED,
                  view: str = "lateral") -> SpineGeometry:
    """The patient-frame geometry of ``case`` at ``time_point`` (mm)."""
    if view == "ap":
        return build_ap_spine(default_ap_levels("T11", "L5"))
    specs = _level_specs(case, time_point, _case_rng(seed, case, 1))
    cemented = time_point != "preop"
    cement = replace(case.cement, seed=case.cement.seed + seed) if cemented else None
    sclerosis = (case.level,) if time_point == "preop" else ()
    return build_lateral_spine(
        specs, cement_level=case.level if cemented else None, cement=cement,
        cleft_level=case.level if (case.ivc_cleft and time_point == "preop") else None,
        sclerosis=sclerosis,
    )


# ----------------------------------------------------------------------------------------
# calibration


def _header_spacing(plan: FilmPlan) -> dict[str, object]:
    """Header calibration attributes of a plan (text exactly as written)."""
    ips = format_ds(plan.imager_spacing)
    ermf = format_ds(plan.ermf)
    if plan.calibration == "ermf":
        return {"imager_pixel_spacing": ips, "ermf": ermf}
    if plan.calibration == "ips":
        return {"imager_pixel_spacing": ips}
    if plan.calibration == "ps_calibrated":
        ps = format_ds(round(float(ips) / float(ermf) * 0.995, 4))
        return {"imager_pixel_spacing": ips, "ermf": ermf, "pixel_spacing": f"{ps}\\{ps}",
                "pixel_spacing_calibration_type": "GEOMETRY",
                "pixel_spacing_calibration_description":
                    "Magnification corrected to the mid-sagittal plane"}
    if plan.calibration == "zero_ps":
        return {"pixel_spacing": "0\\0"}
    if plan.calibration == "ps_only":
        ps = format_ds(round(float(ips) / float(ermf), 4))
        return {"pixel_spacing": f"{ps}\\{ps}"}
    raise ValueError(f'FilmPlan "calibration" must be ermf, ips, ps_calibrated, ps_only or '
                     f"zero_ps; "
                     f"got {plan.calibration!r}")


def _valid(v: float | None) -> bool:
    return v is not None and np.isfinite(v) and 0.01 <= v <= 5.0


def expected_calibration(attrs: dict[str, object]) -> dict[str, object]:
    """The calibration docs/calibration.md derives from header attributes (no reader calibration).

    Order: PixelSpacing with a PixelSpacingCalibrationType (``pixel_spacing_calibrated``),
    ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor
    (``imager_pixel_spacing_ermf``), ImagerPixelSpacing (``imager_pixel_spacing``),
    PixelSpacing (``pixel_spacing``), else ``uncalibrated``. A spacing that is 0, negative,
    NaN or outside 0.01-5 mm is treated as missing.

    >>> expected_calibration({"imager_pixel_spacing": "0.28", "ermf": "1.12"})["row_mm"]
    0.25
    >>> expected_calibration({"pixel_spacing": "0\\\\0"})["source"]
    'uncalibrated'
    """
    ps = attrs.get("pixel_spacing")
    ps_v = [float(x) for x in str(ps).split("\\")] if ps is not None else None
    ps_ok = ps_v is not None and all(_valid(x) for x in ps_v)
    ips = attrs.get("imager_pixel_spacing")
    ips_v = float(ips) if ips is not None else None
    ermf = attrs.get("ermf")
    ermf_v = float(ermf) if ermf is not None else None
    if ps_ok and attrs.get("pixel_spacing_calibration_type"):
        return {"source": "pixel_spacing_calibrated", "row_mm": ps_v[0], "col_mm": ps_v[1]}
    if _valid(ips_v) and ermf_v is not None and np.isfinite(ermf_v) and ermf_v > 0:
        sp = ips_v / ermf_v
        if _valid(sp):
            return {"source": "imager_pixel_spacing_ermf", "row_mm": sp, "col_mm": sp}
    if _valid(ips_v):
        return {"source": "imager_pixel_spacing", "row_mm": ips_v, "col_mm": ips_v}
    if ps_ok:
        return {"source": "pixel_spacing", "row_mm": ps_v[0], "col_mm": ps_v[1]}
    return {"source": "uncalibrated", "row_mm": None, "col_mm": None}


# ----------------------------------------------------------------------------------------
# rendering and truth


@dataclass
class GeneratedFilm:
    """A rendered film with everything needed to write it and its truth."""

    case: PatientCase
    plan: FilmPlan
    film: Film
    header: FilmHeader
    calibration: dict[str, object]
    truth: dict[str, object] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        return f"{self.case.patient_id}_{self.plan.suffix}"


def contact_distances_mm(mask: np.ndarray, polyline_px: np.ndarray,
                         spacing_mm: float) -> float:
    """Smallest distance (mm) from any mask pixel centre to an endplate polyline (px)."""
    rr, cc = np.nonzero(mask)
    if rr.size == 0:
        return float("inf")
    pts = np.stack([rr, cc], 1).astype(float)
    return float(polyline_distance(pts, polyline_px).min() * spacing_mm)


def _date(iso: str, days: int) -> _dt.date:
    return _dt.date.fromisoformat(iso) + _dt.timedelta(days=days)


def render_case_film(case: PatientCase, plan: FilmPlan, seed: int = DEFAULT_SEED,
                     **overrides) -> GeneratedFilm:
    """Render one planned film of ``case`` and build its header and ground truth.

    ``overrides`` replace fields of the :class:`RenderOptions` (for degraded variants). A
    ``spacing_mm`` override rescales the plan's detector spacing too, so that the header
    states the spacing the film was rendered at.
    """
    attrs = _header_spacing(plan)
    calib = expected_calibration(attrs)
    spacing = calib["row_mm"] if calib["row_mm"] is not None else \
        plan.imager_spacing / plan.ermf
    if "spacing_mm" in overrides and calib["row_mm"] is not None:
        plan = replace(plan, imager_spacing=plan.imager_spacing * overrides["spacing_mm"]
                       / spacing)
        attrs = _header_spacing(plan)
        calib = expected_calibration(attrs)
    geom = case_geometry(case, plan.time_point, seed, plan.view)
    fseed = int(_case_rng(seed, case, 2, ["preop", "postop", "followup"].index(plan.time_point),
                          0 if plan.view == "lateral" else 1).integers(2**31))
    opts = RenderOptions(spacing_mm=float(spacing), facing=plan.facing,
                         rotation_deg=plan.rotation_deg, noise=plan.noise,
                         polarity=plan.polarity, bits_stored=plan.bits_stored, seed=fseed)
    if overrides:
        opts = replace(opts, **overrides)
    film = render_film(geom, opts)

    pid = case.patient_id
    study_key = (seed, pid, plan.time_point, plan.view)
    acq = _date(case.preop_date, plan.days)
    proc = _date(case.preop_date, case.films[1].days - 1)
    rng = _case_rng(seed, case, 3)
    birth = _date(case.preop_date, -int(case.age * 365.25 + rng.integers(30, 300)))
    hour = 8 + (int(pid[2:]) * 3 + plan.days) % 9
    header = FilmHeader(
        patient_id=pid, patient_name=f"SYNTHETIC^{pid}", birth_date=birth.strftime("%Y%m%d"),
        sex=case.sex, age=case.age + (plan.days // 365),
        study_date=acq.strftime("%Y%m%d"), study_time=f"{hour:02d}{(7 * plan.days) % 60:02d}00",
        study_uid=deterministic_uid(*study_key, "study"),
        series_uid=deterministic_uid(*study_key, "series"),
        sop_uid=deterministic_uid(*study_key, "instance"),
        frame_uid=deterministic_uid(*study_key, "frame"),
        accession=f"A{int(pid[2:]):03d}{acq.strftime('%y%m%d')}",
        study_description="XR SPINE THORACOLUMBAR",
        series_description="TL SPINE LAT" if plan.view == "lateral" else "TL SPINE AP",
        series_number=1 if plan.view == "lateral" else 2, instance_number=1,
        view=plan.view, facing=plan.facing, polarity=plan.polarity,
        bits_stored=plan.bits_stored, transfer_syntax=plan.transfer_syntax,
        sop_class="CR" if plan.calibration in ("zero_ps", "ps_only") else "DX",
        imager_pixel_spacing=float(attrs["imager_pixel_spacing"])
        if "imager_pixel_spacing" in attrs else None,
        ermf=float(attrs["ermf"]) if "ermf" in attrs else None,
        pixel_spacing=attrs.get("pixel_spacing"),  # type: ignore[arg-type]
        pixel_spacing_calibration_type=attrs.get("pixel_spacing_calibration_type"),  # type: ignore[arg-type]
        pixel_spacing_calibration_description=attrs.get(  # type: ignore[arg-type]
            "pixel_spacing_calibration_description"),
        kvp=85.0 if plan.view == "lateral" else 78.0,
        exposure_mas=40.0 if plan.view == "lateral" else 20.0,
    )
    gen = GeneratedFilm(case, plan, film, header, calib)
    gen.truth = _truth(gen, proc)
    return gen


def _round_pt(p) -> list[float]:
    return [round(float(p[0]), 4), round(float(p[1]), 4)]


def _truth(gen: GeneratedFilm, procedure_date: _dt.date) -> dict[str, object]:
    case, plan, film = gen.case, gen.plan, gen.film
    gpx = film.geometry_px
    verts = []
    for v in gpx.vertebrae:
        verts.append({"level": v.level, "fractured": bool(v.fractured),
                      "treated": bool(v.treated), "excluded": bool(v.excluded),
                      "points": {k: _round_pt(p) for k, p in v.landmarks.items()}})
    cement = None
    sp = film.options.spacing_mm
    if film.cement_mask.any():
        v = gpx.vertebra(case.level)
        lm = v.landmarks
        sup = np.stack([lm["Ps"], lm["Ms"], lm["As"]])
        inf = np.stack([lm["Pi"], lm["Mi"], lm["Ai"]])
        d_sup = contact_distances_mm(film.cement_mask, sup, sp)
        d_inf = contact_distances_mm(film.cement_mask, inf, sp)
        cs, ci = d_sup <= CONTACT_TOLERANCE_MM, d_inf <= CONTACT_TOLERANCE_MM
        # the design must be unambiguous: contact means overlap, a gap is clearly > 1 mm
        for d, gap, name in ((d_sup, case.cement.gap_superior, "superior"),
                             (d_inf, case.cement.gap_inferior, "inferior")):
            if (gap == 0 and d > 0.5) or (gap > 0 and d < 2.0):
                raise RuntimeError(f"{case.patient_id} {plan.time_point}: cement {name} "
                                   f"distance {d:.2f} mm contradicts the design gap {gap} mm")
        npec = {(True, True): "none", (False, True): "superior", (True, False): "inferior",
                (False, False): "both"}[(bool(cs), bool(ci))]
        cement = {
            "level": case.level, "mask": f"{gen.stem}.cement.png",
            "distribution": case.cement.distribution, "npec": npec,
            "contacts_superior": bool(cs), "contacts_inferior": bool(ci),
            "gap_superior_mm": round(d_sup, 3), "gap_inferior_mm": round(d_inf, 3),
            "leaks": [{"location": lk.location, "type": lk.type} for lk in case.cement.leaks],
        }
    findings = dict(case.findings)
    if plan.time_point != "followup":
        findings["bone_marrow_oedema"] = None
    design: dict[str, object] = {
        "render_spacing_mm": round(sp, 6), "rotation_deg": plan.rotation_deg,
        "bits_stored": plan.bits_stored,
    }
    if plan.view == "lateral":
        design["fracture"] = {"level": case.level, "shape": case.fracture,
                              "loss_fraction": case.loss[plan.time_point]}
        design["recompression_expected"] = _expected_recompression(case)
    else:
        design["coronal_cobb_deg"] = round(_coronal_cobb(gpx), 3)
    return {
        "schema": TRUTH_SCHEMA,
        "image": f"{gen.stem}.dcm",
        "patient_id": case.patient_id,
        "sop_instance_uid": gen.header.sop_uid,
        "view": plan.view,
        "facing": plan.facing if plan.view == "lateral" else None,
        "time_point": plan.time_point,
        "acquisition_date": _date(case.preop_date, plan.days).isoformat(),
        "procedure_date": procedure_date.isoformat(),
        "calibration": gen.calibration,
        "vertebrae": verts,
        "cement": cement,
        "findings": findings,
        "design": design,
    }


def _expected_recompression(case: PatientCase) -> bool:
    xp, xf = case.loss["postop"], case.loss["followup"]
    if case.fracture == "wedge":
        hl = (xf - xp) / (1.0 - xp)
    else:
        hl = (0.5 * xf - 0.5 * xp) / (1.0 - 0.5 * xp)
    return bool(hl >= 0.15 or case.followup_disc_collapse_mm > 0)


def _coronal_cobb(gpx: SpineGeometry) -> float:
    """Endplate Cobb: the largest angle between any two endplates (deg)."""
    angs = []
    for v in gpx.vertebrae:
        lm = v.landmarks
        for a, b in (("SL", "SR"), ("IL", "IR")):
            d = lm[b] - lm[a]
            angs.append(np.degrees(np.arctan2(d[0], d[1])))
    return float(max(angs) - min(angs))


# ----------------------------------------------------------------------------------------
# writing the set


def _all_plans() -> list[tuple[PatientCase, FilmPlan]]:
    out = [(c, p) for c in CASES for p in c.films]
    ap_case = next(c for c in CASES if c.patient_id == AP_PATIENT)
    out.append((ap_case, AP_PLAN))
    return out


def truth_to_json(truth: dict[str, object]) -> str:
    """The truth as indented JSON with each ``[row, col]`` point on one line."""
    text = json.dumps(truth, indent=1)
    text = re.sub(r"\[\s+(-?[0-9.eE+-]+),\s+(-?[0-9.eE+-]+)\s+\]", r"[\1, \2]", text)
    return text + "\n"


def write_generated(gen: GeneratedFilm, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write the DICOM file, truth JSON and (if any) cement mask PNG of ``gen``."""
    folder = Path(out_dir) / gen.case.patient_id
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{gen.stem}.dcm", folder / f"{gen.stem}.truth.json"]
    write_film(paths[0], gen.film.pixels, gen.header)
    paths[1].write_text(truth_to_json(gen.truth), encoding="utf-8")
    if gen.truth["cement"] is not None:
        p = folder / f"{gen.stem}.cement.png"
        Image.fromarray(gen.film.cement_mask.astype(np.uint8) * 255).save(p, optimize=True)
        paths.append(p)
    return paths


def generate_sample_set(out_dir: str | os.PathLike[str], seed: int = DEFAULT_SEED,
                        patients: list[str] | None = None, write_tables: bool = True
                        ) -> list[Path]:
    """Render and write the sample studies (all, or only ``patients``) into ``out_dir``.

    Writes ``<patient>/<patient>_<time point>[_ap].dcm`` + ``.truth.json`` (+
    ``.cement.png``), and with ``write_tables`` also ``clinical.csv`` and ``README.md``.
    Returns the written paths. Same ``seed`` -> byte-identical pixels, headers and truth.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rows = []
    for case, plan in _all_plans():
        if patients is not None and case.patient_id not in patients:
            continue
        gen = render_case_film(case, plan, seed)
        written += write_generated(gen, out)
        from spine_measure.synthetic.annotations import write_annotation_for_truth
        written.append(write_annotation_for_truth(
            out / case.patient_id / f"{gen.stem}.truth.json"))
        rows.append(gen)
        log.info("wrote %s", gen.stem)
    if write_tables:
        written.append(_write_clinical(out, [c for c in CASES
                                             if patients is None or c.patient_id in patients]))
        from spine_measure.synthetic.readme import write_readme
        written.append(write_readme(out, rows, seed))
    return written


CLINICAL_COLUMNS = ["patient_id", "level", "age", "sex", "bmi", "bmd_t_score", "procedure",
                    "approach", "cement_volume_ml", "procedure_date",
                    "anti_osteoporosis_therapy", "brace"]


def _write_clinical(out: Path, cases: list[PatientCase]) -> Path:
    path = out / "clinical.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(CLINICAL_COLUMNS)
        for c in cases:
            proc = _date(c.preop_date, c.films[1].days - 1).isoformat()
            w.writerow([c.patient_id, c.level, c.age, c.sex, f"{c.bmi:.1f}",
                        f"{c.bmd_t_score:.1f}", c.procedure, c.approach,
                        f"{c.cement_volume_ml:.1f}", proc,
                        "yes" if c.anti_osteoporosis_therapy else "no",
                        "yes" if c.brace else "no"])
    return path
