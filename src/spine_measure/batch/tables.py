"""Assemble the output tables from the plan and the journal, deterministically.

The tables depend only on the plan (sorted by path) and the journalled records, never on the
order in which workers finished, so a resumed, parallel or distributed run writes the same
bytes as an uninterrupted serial one.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spine_measure import __version__
from spine_measure.batch.clinical import CANONICAL, ClinicalTable
from spine_measure.batch.plan import BatchPlan, ErrorRow
from spine_measure.batch.timepoints import FilmDate, assign_time_points
from spine_measure.landmarks import LEVELS, SpineLandmarks
from spine_measure.measurements import (
    FilmMeasurements,
    LongitudinalOptions,
    measure_film,
    measure_longitudinal,
)
from spine_measure.measurements.docs_gen import data_dictionary_csv
from spine_measure.measurements.registry import entries

__all__ = ["RESERVED_SUFFIXES", "Tables", "assemble", "csv_text", "reserved_columns"]

TPS = ("preop", "postop", "followup")
FINDINGS = ("ivc", "endplate_disruption", "posterior_fascia_oedema", "goutallier_grade",
            "muscle_fat_fraction", "leakage_other_views")
CLINICAL_ORDER = [c for c in CANONICAL if c not in ("patient_id", "level", "procedure_date")]


def _vertebra_defs(view: str) -> list[Any]:
    return [d for d in entries() if d.scope == "vertebra" and d.view == view]


def _film_defs(view: str) -> list[Any]:
    return [d for d in entries() if d.scope == "film" and d.view == view]


def _long_defs() -> list[Any]:
    return [d for d in entries() if d.scope == "longitudinal"]


def fmt(value: Any) -> str:
    """CSV text of a value: empty for missing, ``true``/``false``, shortest float repr."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([fmt(r.get(c)) for c in columns])
    return buf.getvalue()


@dataclass
class Tables:
    """The assembled outputs (CSV text) and the counts for the summary."""

    wide: str
    long: str
    errors: str
    dictionary: str
    wide_columns: list[str]
    long_columns: list[str]
    error_rows: list[ErrorRow] = field(default_factory=list)
    n_done: int = 0
    n_failed: int = 0
    n_skipped: int = 0
    n_rows: int = 0
    n_clinical_errors: int = 0


# ----------------------------------------------------------------------------- columns


def _single_cols() -> list[str]:
    """Per-vertebra columns of a lateral film in the wide table (suffixed by time point)."""
    return _with_extras([c for d in _vertebra_defs("lateral") for c in d.columns]) + [
        "reference_neighbours"]


def _cement_cols(records: Iterable[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for rec in records:
        for feats in (rec.get("cement") or {}).values():
            for k in feats:
                names.setdefault(k, None)
    return sorted(names)


def _cement_definition(base: str) -> dict[str, str]:
    """Unit and definition of a cement column (``spine_measure.cement.CEMENT_COLUMNS``)."""
    from spine_measure.cement import CEMENT_COLUMNS

    for suffix, unit in (("_mm2", "mm2"), ("_px2", "px2"), ("_mm", "mm"), ("_px", "px")):
        if base.endswith(suffix) and base[: -len(suffix)] in CEMENT_COLUMNS:
            return {"unit": unit, "definition": CEMENT_COLUMNS[base[: -len(suffix)]][1],
                    "source": "docs/cement.md"}
    if base in CEMENT_COLUMNS:
        unit, definition = CEMENT_COLUMNS[base]
        return {"unit": unit, "definition": definition, "source": "docs/cement.md"}
    if base in CEMENT_SHAPE_COLUMNS:
        unit, definition = CEMENT_SHAPE_COLUMNS[base]
        return {"unit": unit, "definition": definition, "source": "docs/cement.md"}
    return {"unit": "", "definition": "Cement feature (docs/cement.md).",
            "source": "docs/cement.md"}


#: The cement shape and texture columns: unit and definition (docs/cement.md).
CEMENT_SHAPE_COLUMNS: dict[str, tuple[str, str]] = {
    "cement_solidity": ("ratio 0-1", "Intravertebral cement pixels / pixels of the convex "
                                     "hull of their centres (1 for a convex lump); blocky "
                                     "distribution needs >= 0.85."),
    "cement_roughness": ("ratio >= 1", "Perimeter of the intravertebral cement / perimeter of "
                                       "its convex hull (1 for a smooth convex lump); blocky "
                                       "distribution needs <= 1.5."),
    "cement_components": ("count", "Connected components (8-connected) of the "
                                   "intravertebral cement of at least 0.5 mm2."),
    "cement_hole_fraction": ("ratio 0-1", "Holes enclosed by the cement / (cement + holes), "
                                          "in pixels; 0 for a solid fill."),
    "cement_texture_cv": ("ratio", "Coefficient of variation (standard deviation / mean) of "
                                   "the film's density excess over the local bone inside the "
                                   "cement core; empty for a reader-edited mask."),
}


def wide_columns(identifiers: bool, extra_clinical: Sequence[str],
                 cement_cols: Sequence[str]) -> list[str]:
    cols = ["patient_pseudo_id"] + (["patient_id"] if identifiers else []) + [
        "level", "procedure_date", "procedure_date_source", "n_followup_films"]
    for tp in TPS:
        cols += [f"sop_instance_uid_{tp}", f"date_{tp}", f"days_from_procedure_{tp}",
                 f"time_point_source_{tp}", f"calibration_source_{tp}", f"overlay_{tp}",
                 f"landmark_source_{tp}"]
        if identifiers:
            cols.append(f"file_{tp}")
    cols += ["sop_instance_uid_ap", "date_ap", "time_point_ap", "calibration_source_ap"]
    cols += [f"{c}_ap" for d in _film_defs("ap") for c in d.columns]
    for tp in TPS:
        cols += [f"{c}_{tp}" for c in _single_cols()]
    for tp in ("postop", "followup"):
        cols += [f"{c}_{tp}" for c in cement_cols]
    cols += [c for d in _long_defs() for c in d.columns]
    cols += list(FINDINGS) + ["bone_marrow_oedema", "treated_hu", "adjacent_hu"]
    cols += ["vertebral_body_volume_ml", "cement_volume_ratio_pct", "cement_volume_ratio_high"]
    cols += CLINICAL_ORDER + [c for c in extra_clinical if c not in CLINICAL_ORDER]
    cols += ["clinical_match", "reasons", "spine_measure_version"]
    return cols


#: Reader columns written right after the computed ``genant_shape``.
READER_COLS = ("genant_grade_reader", "genant_shape_reader")
#: The endplates (end vertebrae) of each film-level angle, after the angle's column.
END_COLS = {"cobb_angle_deg": ("cobb_spec", "cobb_upper_endplate", "cobb_lower_endplate"),
            "coronal_cobb_angle_deg": ("coronal_cobb_upper_endplate",
                                       "coronal_cobb_lower_endplate"),
            "coronal_cobb_angle_midline_deg": ("coronal_cobb_midline_upper_level",
                                               "coronal_cobb_midline_lower_level")}


def _with_extras(cols: list[str]) -> list[str]:
    """Registry columns with the reader's Genant columns and the end endplates inserted."""
    out: list[str] = []
    for c in cols:
        out.append(c)
        if c == "genant_shape":
            out += READER_COLS
        out += END_COLS.get(c, ())
    return out


#: Endings of measured columns (time points, AP film): never a clinical column's.
RESERVED_SUFFIXES = tuple(f"_{tp}" for tp in (*TPS, "ap"))


def reserved_columns() -> frozenset[str]:
    """Names a clinical column may not have: every measured or bookkeeping column of
    ``features_wide.csv`` and ``measurements_long.csv`` (and the batch's own column names),
    except the clinical table's canonical columns. Cement columns carry a time-point suffix
    (:data:`RESERVED_SUFFIXES`)."""
    names = set(wide_columns(True, [], [])) | set(long_columns(True)) | set(BATCH_COLUMNS)
    return frozenset(names - set(CANONICAL))


def long_columns(identifiers: bool) -> list[str]:
    cols = ["patient_pseudo_id"] + (["patient_id", "file", "annotation_file"]
                                     if identifiers else []) + [
        "sop_instance_uid", "date", "time_point", "view", "level", "fractured", "treated",
        "excluded", "landmark_source", "calibration_source", "spacing_row_mm",
        "spacing_col_mm"]
    for view in ("lateral", "ap"):
        cols += [c for d in _vertebra_defs(view) + _film_defs(view) for c in d.columns
                 if c not in cols]
    return _with_extras(cols) + ["reference_neighbours", "reasons", "overlay",
                                 "annotation_source", "annotation_sha256",
                                 "spine_measure_version"]


def _film_rows(fm: FilmMeasurements, base: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The long table's film-level rows: one per sagittal Cobb angle asked for (with its
    endplates), one for the coronal angles of an AP film (with their end vertebrae)."""
    rows: list[dict[str, Any]] = []
    coronal: dict[str, Any] = {}
    coronal_reasons: list[str] = []
    # sagittal Cobb results come in the order of the options: fixed pairs, then keywords
    specs = iter([(f"{a},{b}", str(a), str(b)) for a, b in fm.options.cobb]
                 + [(k, None, None) for k in fm.options.cobb_keywords])
    for res in fm.film:
        d = res.detail
        if res.name == "cobb_angle":
            spec, upper, lower = next(specs)
            row = {**base, "level": "", res.column: res.value, "cobb_spec": spec,
                   "cobb_upper_endplate": d.get("upper", upper),
                   "cobb_lower_endplate": d.get("lower", lower),
                   "reasons": f"{res.name}: {res.reason}" if res.reason else ""}
            rows.append(row)
            continue
        coronal[res.column] = res.value
        for col in END_COLS.get(res.column, ()):
            coronal[col] = d.get("lower_level" if col.endswith("lower_level") else
                                 "upper_level" if col.endswith("upper_level") else
                                 "lower" if "lower" in col else "upper")
        if res.reason:
            coronal_reasons.append(f"{res.name}: {res.reason}")
    if coronal:
        rows.append({**base, "level": "", **coronal, "reasons": "; ".join(coronal_reasons)})
    return rows


# ----------------------------------------------------------------------------- assembly


def _film(rec: dict[str, Any], cobb: Sequence[str] = ()) -> FilmMeasurements:
    spacing = None if rec["spacing"] is None else tuple(rec["spacing"])
    return measure_film(SpineLandmarks.from_dict(rec["landmarks"]), spacing=spacing,
                        calibration_source=rec["calibration_source"], cobb=cobb)


def _merge_findings(films: Sequence[dict[str, Any]], key_of: Any, where: str,
                    notes: list[ErrorRow]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in FINDINGS:
        vals = [(key_of(r), r["findings"].get(name)) for r in films
                if r["findings"].get(name) is not None]
        out[name] = vals[0][1] if vals else None
        if len({v for _k, v in vals}) > 1:
            notes.append(ErrorRow(vals[0][0], "findings", "warning",
                                  f"{where}: conflicting {name} across films ("
                                  + ", ".join(f"{k}: {v}" for k, v in vals)
                                  + f"); the {vals[0][0]} value is used"))
    return out


def _hu(films: Sequence[dict[str, Any]], level: str) -> tuple[float | None, float | None]:
    hu: dict[str, float] = {}
    for r in films:
        for lv, v in (r["findings"].get("ct_hu") or {}).items():
            if v is not None:
                hu.setdefault(lv, v)
    i = LEVELS.index(level)
    adj = [hu[lv] for lv in (LEVELS[i - 1] if i > 0 else None,
                             LEVELS[i + 1] if i + 1 < len(LEVELS) else None)
           if lv in hu]
    return hu.get(level), (sum(adj) / len(adj) if adj else None)


def _volume_ratio(crow: Mapping[str, Any] | None, postop: FilmMeasurements | None,
                  ap: FilmMeasurements | None, level: str) -> Any:
    """Cement-to-body volume ratio of ``level`` (docs/cement.md, Zeng 2025's 13.82 %): the body's
    depth and height from the post-operative lateral film, its width from the AP film (the
    width hardly changes with a compression fracture, so an AP film of any time point
    serves), the cement volume from the clinical table (``spine_measure.cement.volume``)."""
    from spine_measure.cement.volume import cement_volume_ratio

    def vertebra(fm: FilmMeasurements | None) -> tuple[Any, Any]:
        if fm is None or level not in fm.landmarks:
            return None, None
        return fm.landmarks[level], fm.spacing

    volume = (crow or {}).get("cement_volume_ml")
    volume = float(volume) if isinstance(volume, int | float) else None
    lat, lat_sp = vertebra(postop)
    apv, ap_sp = vertebra(ap)
    return cement_volume_ratio(volume, lat, lat_sp, apv, ap_sp)


def uncertainty_column_names() -> tuple[list[str], list[str]]:
    """The optional columns of ``batch --uncertainty``: (features_wide, measurements_long).

    features_wide: ``<column>_u`` of every numeric longitudinal measurement and the
    three-state ``recompression_state`` / ``refracture_state``; measurements_long:
    ``<column>_u`` of every numeric single-film measurement, ``compression_ge_38_5_state``,
    ``degenerative_scoliosis_state``; both: ``uncertainty_model``.
    """
    numeric = ("length", "angle", "ratio")
    wide = [f"{c}_u" for d in _long_defs() if d.kind in numeric for c in d.columns]
    wide += ["recompression_state", "refracture_state", "uncertainty_model"]
    long_: list[str] = []
    for view in ("lateral", "ap"):
        long_ += [f"{c}_u" for d in _vertebra_defs(view) + _film_defs(view)
                  if d.kind in numeric for c in d.columns if f"{c}_u" not in long_]
    long_ += ["compression_ge_38_5_state", "degenerative_scoliosis_state", "uncertainty_model"]
    return wide, long_


def _series_uncertainty(slot: Mapping[str, FilmMeasurements | None],
                        follow: Sequence[FilmMeasurements], level: str,
                        oedema: bool | None, options: LongitudinalOptions | None,
                        model: Any) -> dict[str, Any]:
    from spine_measure.measurements.uncertainty import longitudinal_uncertainty

    try:
        lu = longitudinal_uncertainty(slot["preop"], slot["postop"], follow, model=model,
                                      level=level, bone_marrow_oedema=oedema, options=options)
    except ValueError as exc:   # e.g. no treated level on the films: the values say why
        return {"uncertainty_model": f"{model.describe()}; not computed: {exc}"}
    out: dict[str, Any] = {f"{it.column}_u": (it.u if it.ok else None)
                           for it in lu.items.values()}
    out.update(recompression_state=lu.flags["recompression"],
               refracture_state=lu.flags["refracture"], uncertainty_model=model.describe())
    return out


def assemble(plan: BatchPlan, records: Mapping[str, dict[str, Any]], *,
             identifiers: bool = False, clinical: ClinicalTable | None = None,
             long_options: LongitudinalOptions | None = None,
             postop_window_days: int = 14, overlay_paths: Mapping[str, str] | None = None,
             key: bytes | None = None, cobb: Sequence[str] = (),
             uncertainty: Any = None) -> Tables:
    """Build every table from the plan and the per-film records (see module docstring).

    ``key`` (the pseudonymisation key) lets the clinical table's warnings name a patient id
    that matches no film by its pseudonym; with ``identifiers`` they name the real id.
    ``uncertainty`` (a :class:`~spine_measure.measurements.uncertainty.LandmarkErrorModel`)
    adds the optional uncertainty columns (:func:`uncertainty_column_names`).
    ``cobb``: the sagittal Cobb angles measured on every lateral film (endplate pairs or
    keywords, ``spine_measure.measurements.parse_cobb_spec``)."""
    notes: list[ErrorRow] = list(plan.issues)
    overlay_paths = overlay_paths or {}
    done: dict[str, dict[str, Any]] = {}
    fms: dict[str, FilmMeasurements] = {}
    n_failed = n_skipped = 0
    for task in plan.tasks:
        rec = records.get(task.key)
        if rec is None:
            continue
        if rec["status"] != "done":
            notes.append(ErrorRow(task.key, rec["stage"], rec["status"], rec["reason"]))
            continue
        for stage, reason in rec.get("warnings", []):
            notes.append(ErrorRow(task.key, stage, "warning", reason))
        done[task.key] = rec
        fms[task.key] = _film(rec, cobb)
    # patients -> films
    patients: dict[str, list[str]] = {}
    for film_key in done:
        pid = plan.headers[film_key].metadata.patient_id or ""
        patients.setdefault(pid, []).append(film_key)
    task_of = {t.key: t for t in plan.tasks}
    clinical_used: set[tuple[str, str | None]] = set()
    no_clinical_row: list[tuple[str, str, str]] = []     # (patient id, level, first film)
    wide_rows: list[dict[str, Any]] = []
    long_tp: dict[str, tuple[str, str]] = {}
    extra_clin = [c for c in (clinical.columns if clinical else []) if c != "procedure_date"]
    for pid in sorted(patients):
        keys = sorted(patients[pid])
        pseudo = task_of[keys[0]].pseudo_id
        if not pid:
            for k in keys:
                notes.append(ErrorRow(k, "group", "warning", "no PatientID: grouped with the "
                                                            "other films without one"))
        levels: set[str] = set()
        for k in keys:
            levels.update(done[k]["treated_levels"])
        if clinical is not None:
            levels.update(lv for (p, lv) in clinical.rows if p == pid and lv is not None)
        ann_dates = sorted({(done[k]["procedure_date"], k) for k in keys
                            if done[k]["procedure_date"]})
        if not levels:
            for k in keys:
                notes.append(ErrorRow(k, "group", "warning",
                                      "no vertebra of this patient is flagged treated (and no "
                                      "level in the clinical table): in measurements_long.csv "
                                      "only"))
            levels_sorted: list[str | None] = [None]
        else:
            levels_sorted = sorted(levels, key=LEVELS.index)
        for level in levels_sorted:
            crow, match = (clinical.lookup(pid, level) if clinical is not None and level
                           else (None, "none"))
            if crow is not None:
                clinical_used.add((pid, level if match == "patient_level" else None))
            elif clinical is not None and level is not None:
                no_clinical_row.append((pid, level, keys[0]))
            proc, proc_src = None, ""
            if crow is not None and crow.get("procedure_date") is not None:
                proc, proc_src = crow["procedure_date"], "clinical_table"
            distinct = sorted({d for d, _k in ann_dates})
            if distinct:
                if proc is None:
                    proc, proc_src = dt.date.fromisoformat(distinct[0]), "annotation"
                    if len(distinct) > 1:
                        notes.append(ErrorRow(ann_dates[0][1], "timepoint", "warning",
                                              "conflicting procedure dates in the annotations "
                                              f"({', '.join(distinct)}); the earliest is used"))
                elif any(d != proc.isoformat() for d in distinct):
                    notes.append(ErrorRow(ann_dates[0][1], "timepoint", "warning",
                                          f"conflicting procedure dates: clinical table "
                                          f"{proc}, annotation(s) {', '.join(distinct)}; the "
                                          "clinical table is used"))
            fds = [FilmDate(k, dt.date.fromisoformat(task_of[k].date) if task_of[k].date
                            else None, done[k]["time_point"],
                            bool(done[k]["treated_levels"] or done[k]["cement_levels"]),
                            done[k]["view"]) for k in keys]
            asg = assign_time_points(fds, proc, postop_window_days=postop_window_days)
            for k, sev, reason in asg.notes:
                if level is levels_sorted[0]:
                    notes.append(ErrorRow(k or keys[0], "timepoint", sev, reason))
            for k in keys:
                if k in asg.time_point and k not in long_tp:
                    long_tp[k] = (asg.time_point[k], asg.source[k])
            if level is None:
                continue
            row: dict[str, Any] = {"patient_pseudo_id": pseudo, "level": level,
                                   "procedure_date": proc, "procedure_date_source": proc_src,
                                   "spine_measure_version": __version__}
            if identifiers:
                row["patient_id"] = pid
            reasons: list[str] = []
            slot: dict[str, FilmMeasurements | None] = {}
            for tp in TPS:
                k = asg.film(tp)
                slot[tp] = fms.get(k) if k else None
                if k is None:
                    reasons.append(f"no {tp} film")
                    continue
                rec = done[k]
                d = task_of[k].date
                row.update({f"sop_instance_uid_{tp}": task_of[k].sop_instance_uid,
                            f"date_{tp}": d, f"time_point_source_{tp}": asg.source[k],
                            f"calibration_source_{tp}": rec["calibration_source"],
                            f"overlay_{tp}": overlay_paths.get(k),
                            f"landmark_source_{tp}": (rec.get("landmark_source") or {}).get(
                                level)})
                if proc is not None and d:
                    row[f"days_from_procedure_{tp}"] = (dt.date.fromisoformat(d) - proc).days
                if identifiers:
                    row[f"file_{tp}"] = k
                fm = fms[k]
                if level not in fm.vertebrae:
                    reasons.append(f"{tp}: {level} not annotated")
                nbrs: set[str] = set()
                for name, res in fm.vertebrae.get(level, {}).items():
                    row[f"{res.column}_{tp}"] = res.value
                    nbrs.update(res.neighbours)
                    if res.reason:
                        reasons.append(f"{tp} {name}: {res.reason}")
                if level in fm.vertebrae:
                    v = fm.landmarks[level]
                    row[f"genant_grade_reader_{tp}"] = v.genant_grade_reader
                    row[f"genant_shape_reader_{tp}"] = v.genant_shape_reader
                    row[f"reference_neighbours_{tp}"] = ",".join(
                        sorted(nbrs, key=LEVELS.index))
                for clevel, feats in (rec.get("cement") or {}).items():
                    if clevel == level and tp != "preop":
                        for fk, fv in feats.items():
                            row[f"{fk}_{tp}"] = fv
            follow = asg.followups()
            row["n_followup_films"] = len(follow)
            ap = next((asg.film(tp, "ap") for tp in TPS if asg.film(tp, "ap")), None)
            if ap is not None:
                row.update({"sop_instance_uid_ap": task_of[ap].sop_instance_uid,
                            "date_ap": task_of[ap].date, "time_point_ap": asg.time_point[ap],
                            "calibration_source_ap": done[ap]["calibration_source"]})
                for res in fms[ap].film:
                    row[f"{res.column}_ap"] = res.value
            used = [done[k] for tp in TPS for k in
                    ([asg.film(tp)] if tp != "followup" else follow) if k]
            used += [done[k] for k in keys if done[k] not in used]
            row.update(_merge_findings(used, lambda r: r["key"], pseudo + " " + level, notes))
            oedema = [done[k]["findings"].get("bone_marrow_oedema") for k in reversed(follow)]
            oedema = [v for v in oedema if v is not None]
            row["bone_marrow_oedema"] = oedema[0] if oedema else None
            row["treated_hu"], row["adjacent_hu"] = _hu(used, level)
            lm = measure_longitudinal(slot["preop"], slot["postop"],
                                      [fms[k] for k in follow], level=level,
                                      bone_marrow_oedema=row["bone_marrow_oedema"],
                                      options=long_options)
            for res in lm.results.values():
                row[res.column] = res.value
                if res.reason:
                    reasons.append(f"{res.name}: {res.reason}")
            if uncertainty is not None:
                row.update(_series_uncertainty(slot, [fms[k] for k in follow], level,
                                               row["bone_marrow_oedema"], long_options,
                                               uncertainty))
            row["clinical_match"] = match if clinical is not None else ""
            if crow is not None:
                for c, v in crow.items():
                    if c != "procedure_date":
                        row[c] = v
            vr = _volume_ratio(crow, slot["postop"], fms.get(ap) if ap is not None else None,
                               level)
            row.update(vertebral_body_volume_ml=vr.body_volume_ml,
                       cement_volume_ratio_pct=vr.ratio_pct,
                       cement_volume_ratio_high=vr.above_threshold)
            if vr.reason:
                reasons.append(f"cement_volume_ratio_pct: {vr.reason}")
            row["reasons"] = "; ".join(reasons)
            wide_rows.append(row)
    if clinical is not None:
        pseudo_of = {pid: task_of[sorted(ks)[0]].pseudo_id for pid, ks in patients.items()}
        notes += _clinical_notes(clinical, pseudo_of, no_clinical_row, identifiers, key)
    # long table
    long_rows: list[dict[str, Any]] = []
    for k in sorted(done):
        rec, task = done[k], task_of[k]
        tp, _src = long_tp.get(k, ("", ""))
        base = {"patient_pseudo_id": task.pseudo_id, "sop_instance_uid": task.sop_instance_uid,
                "date": task.date, "time_point": tp, "view": rec["view"],
                "calibration_source": rec["calibration_source"],
                "spacing_row_mm": rec["spacing"][0] if rec["spacing"] else None,
                "spacing_col_mm": rec["spacing"][1] if rec["spacing"] else None,
                "overlay": overlay_paths.get(k), "annotation_source": task.annotation_source,
                "annotation_sha256": rec.get("annotation_sha256"),
                "spine_measure_version": __version__}
        if identifiers:   # file names often hold patient ids: only with --include-identifiers
            base.update(patient_id=plan.headers[k].metadata.patient_id, file=k,
                        annotation_file=None if task.annotation_path is None
                        else plan.annotation_name(task.annotation_path))
        fm = fms[k]
        ucols: dict[Any, dict[str, Any]] = {}
        if uncertainty is not None:
            from spine_measure.measurements.uncertainty import (
                film_uncertainty,
                uncertainty_columns,
            )

            ucols = uncertainty_columns(film_uncertainty(fm, uncertainty))
            for cols in ucols.values():
                cols["uncertainty_model"] = uncertainty.describe()
        sources = rec.get("landmark_source") or {}
        for r in fm.to_rows():
            long_rows.append({**base, "landmark_source": sources.get(r.get("level")),
                              **{c: v for c, v in r.items()
                                         if c not in ("image", "sop_instance_uid")},
                              **ucols.get(r["level"], {})})
        long_rows += _film_rows(fm, {**base, **ucols.get(None, {})})
    cem = _cement_cols(done.values())
    wcols = wide_columns(identifiers, extra_clin, cem)
    lcols = long_columns(identifiers)
    if uncertainty is not None:
        wextra, lextra = uncertainty_column_names()
        wcols = wcols[:-2] + wextra + wcols[-2:]     # before reasons, spine_measure_version
        lcols = lcols[:-1] + lextra + lcols[-1:]
    n_failed = sum(1 for n in notes if n.status == "failed" and n.stage != "clinical")
    n_clinical = sum(1 for n in notes if n.status == "failed" and n.stage == "clinical")
    n_skipped = sum(1 for n in notes if n.status == "skipped")
    notes_sorted = sorted(set(notes))
    return Tables(
        wide=csv_text(wcols, wide_rows), long=csv_text(lcols, long_rows),
        errors=csv_text(["file", "stage", "status", "reason"],
                        ({"file": n.file, "stage": n.stage, "status": n.status,
                          "reason": n.reason} for n in notes_sorted)),
        dictionary=dictionary_csv(wcols, lcols),
        wide_columns=wcols, long_columns=lcols, error_rows=notes_sorted,
        n_done=len(done), n_failed=n_failed, n_skipped=n_skipped, n_rows=len(wide_rows),
        n_clinical_errors=n_clinical)


def _fold(patient_id: str) -> str:
    """An id with case and leading zeros ignored: ids equal under it are near misses."""
    return patient_id.strip().casefold().lstrip("0") or "0"


def _clinical_notes(clinical: ClinicalTable, pseudo_of: Mapping[str, str],
                    no_row: Sequence[tuple[str, str, str]], identifiers: bool,
                    key: bytes | None) -> list[ErrorRow]:
    """errors.csv rows of the clinical table: its own problems (line, column, value), rows
    that match no measured patient, near misses (ids differing only in case or leading zeros:
    not attached, failed), and treated levels of measured patients without a clinical row."""
    from spine_measure.batch.pseudonym import pseudonym

    def label(pid: str) -> str:
        if identifiers:
            return f'"{pid}"'
        if pid in pseudo_of:
            return pseudo_of[pid]
        return f"{pseudonym(pid, key)} (pseudonym of its id)" if key is not None else "the id"

    notes = [ErrorRow(pr.where, "clinical", pr.status, pr.message) for pr in clinical.problems]
    measured = {p for p in pseudo_of if p}
    by_fold: dict[str, list[str]] = {}
    for m in sorted(measured):
        by_fold.setdefault(_fold(m), []).append(m)
    near_line: dict[str, int] = {}
    for (p, lv), line in sorted(clinical.lines.items(), key=lambda kv: kv[1]):
        if p in measured:
            continue
        where = f"{clinical.path}:{line}"
        near = [m for m in by_fold.get(_fold(p), []) if m != p]
        if near and not any(m in clinical.patients() for m in near):
            near_line.setdefault(near[0], line)
            notes.append(ErrorRow(where, "clinical", "failed",
                                  f"patient {label(p)} matches no measured patient, but its id "
                                  "differs only in case or leading zeros from that of "
                                  f"measured patient {label(near[0])}: not attached; write "
                                  "the id exactly as the films' PatientID"))
        else:
            notes.append(ErrorRow(where, "clinical", "warning",
                                  f"patient {label(p)}"
                                  + (f" level {lv}" if lv else "")
                                  + " matches no measured patient (no measured film has this "
                                    "PatientID); the row is not used"))
    for pid, level, film in no_row:
        levels = sorted(lv for (p, lv) in clinical.rows if p == pid and lv)
        why = (f"rows only for level(s) {', '.join(levels)} and none without a level"
               if levels else "no row")
        hint = (f" (line {near_line[pid]} has an id that differs only in case or leading "
                "zeros)" if pid in near_line else "")
        notes.append(ErrorRow(film, "clinical", "warning",
                              f"patient {label(pid)} level {level}: {why} in the clinical "
                              f"table{hint}; its clinical columns are empty "
                              "(clinical_match = none)"))
    return notes


# ----------------------------------------------------------------------------- dictionary

#: The batch's own columns: column -> (unit, definition).
BATCH_COLUMNS: dict[str, tuple[str, str]] = {
    "patient_pseudo_id": ("", "Pseudonymised patient id: P + first 16 hex digits of "
                              "HMAC-SHA256(key, PatientID)."),
    "patient_id": ("", "Real PatientID (only with --include-identifiers)."),
    "file": ("", "Film path relative to the input folder (only with --include-identifiers)."),
    "level": ("", "Treated vertebral level (wide table); vertebra of the row (long table)."),
    "procedure_date": ("date", "Date of the procedure (ISO 8601)."),
    "procedure_date_source": ("", "clinical_table, annotation, or empty (no date: the order "
                                  "of film dates decides)."),
    "n_followup_films": ("count", "Number of follow-up films; the latest is the last "
                                  "follow-up used by the longitudinal features."),
    "sop_instance_uid": ("", "SOPInstanceUID of the film."),
    "date": ("date", "Film date (AcquisitionDate, else StudyDate, else ContentDate)."),
    "days_from_procedure": ("days", "Film date minus procedure date."),
    "time_point": ("", "preop, postop or followup (docs/batch.md)."),
    "time_point_source": ("", "How the time point was decided: annotation, procedure_date or "
                              "date_order."),
    "calibration_source": ("", "Where the spacing came from (docs/calibration.md)."),
    "landmark_source": ("", "Where the vertebra's points come from: reader, propagated, "
                            "refined or mixed (docs/annotation_format.md). Rows of "
                            "unconfirmed proposals appear only with --accept-proposed."),
    "overlay": ("", "Review overlay PNG, relative to the output folder."),
    "annotation_source": ("", "Where the film's annotation came from: annotations_folder "
                              "(--annotations, which wins over sidecars), sidecar (X.sm.json "
                              "next to the film) or input_folder (another file of the input "
                              "folder naming the film's SOPInstanceUID)."),
    "annotation_sha256": ("", "SHA-256 of the annotation file measured (run_manifest.json "
                              "lists it with the file's path)."),
    "annotation_file": ("", "The annotation file measured: its path relative to the input "
                            "folder, or annotations:<path inside the --annotations folder>. "
                            "Written only with --include-identifiers (file "
                            "names often hold patient ids); by default annotation_source and "
                            "annotation_sha256 say which file was measured (run_manifest.json "
                            "maps the hash to the path)."),
    "view": ("", "lateral or ap."),
    "fractured": ("flag", "Reader flag on the vertebra."),
    "treated": ("flag", "Reader flag: the vertebra was cemented."),
    "excluded": ("flag", "Reader flag: not to be used as a reference neighbour."),
    "spacing_row_mm": ("mm", "Row spacing used (empty when uncalibrated)."),
    "spacing_col_mm": ("mm", "Column spacing used (empty when uncalibrated)."),
    "reference_neighbours": ("", "Levels whose heights served as reference for the "
                                 "vertebra's compression rates, crush ratio and Genant "
                                 "grade: the nearest vertebrae above and below not flagged "
                                 "fractured, treated or excluded (comma-separated)."),
    "genant_grade_reader": ("grade 0-3", "The reader's own Genant grade when it overrides the "
                                         "computed genant_grade (annotation); empty when the "
                                         "reader gave none."),
    "genant_shape_reader": ("category", "The reader's own Genant shape (none, wedge, "
                                        "biconcave, crush) when it overrides the computed "
                                        "genant_shape; empty when the reader gave none."),
    "cobb_spec": ("", "The --cobb specification of the row's sagittal Cobb angle: two "
                      "endplates, or treated / treated+1 (docs/measurements.md)."),
    "cobb_upper_endplate": ("", "Cranial endplate of the row's sagittal Cobb angle "
                                "(level:superior or level:inferior)."),
    "cobb_lower_endplate": ("", "Caudal endplate of the row's sagittal Cobb angle."),
    "coronal_cobb_upper_endplate": ("", "Cranial end endplate of coronal_cobb_angle (its "
                                        "upper end vertebra)."),
    "coronal_cobb_lower_endplate": ("", "Caudal end endplate of coronal_cobb_angle (its lower "
                                        "end vertebra)."),
    "coronal_cobb_midline_upper_level": ("", "Upper end vertebra of "
                                             "coronal_cobb_angle_midline."),
    "coronal_cobb_midline_lower_level": ("", "Lower end vertebra of "
                                             "coronal_cobb_angle_midline."),
    "reasons": ("", "Why values of the row are missing (measurement: reason; ...)."),
    "spine_measure_version": ("", "Version of spine_measure that computed the row."),
    "ivc": ("flag", "Reader finding: intravertebral cleft."),
    "endplate_disruption": ("flag", "Reader finding: endplate cortical disruption."),
    "posterior_fascia_oedema": ("flag", "Reader finding: posterior fascia oedema."),
    "goutallier_grade": ("grade 0-4", "Reader finding: Goutallier grade of paraspinal muscle."),
    "muscle_fat_fraction": ("fraction", "Paraspinal muscle fat fraction (T1 MR ROI)."),
    "leakage_other_views": ("flag", "Reader finding: cement leakage seen on other views."),
    "bone_marrow_oedema": ("flag", "Reader finding at the last follow-up: bone marrow "
                                   "oedema."),
    "treated_hu": ("HU", "Mean CT HU of the treated vertebra (reader ROI)."),
    "adjacent_hu": ("HU", "Mean CT HU of the adjacent vertebrae (mean of those given)."),
    "age_years": ("years", "Clinical table: age (accepted 0 to 120)."),
    "sex": ("", "Clinical table: sex, M or F (male/female accepted and written as M/F)."),
    "bmi_kg_m2": ("kg/m2", "Clinical table: body mass index (accepted 10 to 80)."),
    "bmd_t_score": ("SD", "Clinical table: BMD T-score (accepted -10 to 10)."),
    "procedure": ("", "Clinical table: PVP or PKP (vertebroplasty is written PVP; BKP and "
                      "kyphoplasty PKP)."),
    "approach": ("", "Clinical table: unilateral or bilateral (uni-/bipedicular accepted)."),
    "cement_volume_ml": ("ml", "Clinical table: injected cement volume (accepted above 0 and "
                               "at most 50)."),
    "vertebral_body_volume_ml": ("ml", "Elliptic-cylinder estimate of the treated body's "
                                       "volume: pi/4 x depth x width x mean height (depth and "
                                       "height from the post-op lateral film, width from the "
                                       "AP film; docs/cement.md)."),
    "cement_volume_ratio_pct": ("%", "100 x cement_volume_ml / vertebral_body_volume_ml "
                                     "(Zeng 2025)."),
    "cement_volume_ratio_high": ("flag", "cement_volume_ratio_pct > 13.82 %, the threshold "
                                         "Zeng 2025 reports for adjacent fractures."),
    "anti_osteoporosis_therapy": ("flag", "Clinical table: anti-osteoporosis therapy "
                                          "(yes/no, y/n, true/false, 1/0 in the table)."),
    "brace": ("flag", "Clinical table: brace (yes/no, y/n, true/false, 1/0 in the table)."),
    "uncertainty_model": ("", "batch --uncertainty / --uncertainty-from: the landmark error "
                              "model (SD and where it came from) of the *_u columns "
                              "(docs/measurements.md)."),
    "compression_ge_38_5_state": ("", "With --uncertainty: compression_pct >= 38.5 % (Zeng "
                                      "2025) as true, false or uncertain (|value - 38.5| < "
                                      "1.96 u)."),
    "degenerative_scoliosis_state": ("", "With --uncertainty: degenerative_scoliosis as true, "
                                         "false or uncertain (|coronal Cobb - threshold| < "
                                         "1.96 u)."),
    "recompression_state": ("", "With --uncertainty: recompression as true, false or "
                                "uncertain (a criterion within 1.96 u of its threshold and "
                                "none clearly met)."),
    "refracture_state": ("", "With --uncertainty: refracture as true, false or uncertain "
                             "(compression_rate_increase within 1.96 u of its threshold, with "
                             "oedema)."),
    "clinical_match": ("", "How the clinical row was matched: patient_level (row of the "
                           "patient and level), patient (row without a level), none (no row: "
                           "a warning in errors.csv)."),
}


def _registry_dict() -> dict[str, dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(data_dictionary_csv())))
    return {r["column"]: r for r in rows}


DICT_COLUMNS = ("table", "column", "base_column", "time_point", "unit", "family", "definition",
                "formula", "same_as", "values", "paper_term", "source")


def dictionary_csv(wide_cols: Sequence[str], long_cols: Sequence[str]) -> str:
    """``data_dictionary.csv``: every output column, from the registry plus the batch's own."""
    reg = _registry_dict()
    rows = []
    for table, cols in (("features_wide", wide_cols), ("measurements_long", long_cols)):
        for col in cols:
            base, tp = col, ""
            for suffix in (*TPS, "ap"):
                if col.endswith("_" + suffix) and (col[: -len(suffix) - 1] in reg
                                                   or col[: -len(suffix) - 1] in BATCH_COLUMNS
                                                   or suffix in ("postop", "followup")):
                    base, tp = col[: -len(suffix) - 1], suffix
                    break
            row = {"table": table, "column": col, "base_column": base, "time_point": tp}
            if col.endswith("_u") and col[:-2] in reg:
                r = reg[col[:-2]]
                row.update(base_column=col[:-2], unit=r["unit"], family="uncertainty",
                           definition=f"Standard uncertainty of {col[:-2]} from the landmark "
                                      "error model (uncertainty_model): first-order "
                                      "propagation through its formula; 95 % interval "
                                      "value -/+ 1.96 u (docs/measurements.md).")
            elif base in reg:
                r = reg[base]
                row.update(unit=r["unit"], family=r["family"], definition=r["definition"],
                           formula=r["formula"], same_as=r["same_as"], values=r["values"],
                           paper_term=r["paper_term"], source=r["source"])
            elif base in BATCH_COLUMNS:
                row.update(unit=BATCH_COLUMNS[base][0], family="batch",
                           definition=BATCH_COLUMNS[base][1])
            elif tp in ("postop", "followup"):
                row.update(family="cement", **_cement_definition(base))
            else:
                row.update(family="clinical",
                           definition="Clinical table column carried through unchanged.")
            rows.append(row)
    return csv_text(DICT_COLUMNS, rows)


def all_cement_columns() -> list[str]:
    """Every cement column a batch can write (calibrated and uncalibrated variants)."""
    from spine_measure.cement import CEMENT_COLUMNS

    cols: list[str] = []
    for base, (unit, _definition) in CEMENT_COLUMNS.items():
        if "|" in unit:
            cols += [f"{base}_{u}" for u in unit.split("|")]
        else:
            cols.append(base)
    return sorted(cols + list(CEMENT_SHAPE_COLUMNS))


def docs_dictionary_csv() -> str:
    """``docs/data_dictionary.csv``: the dictionary of every column a batch can write (with
    ``--include-identifiers``, every cement column, no extra clinical column), in the layout
    of the output's ``data_dictionary.csv`` (``python -m spine_measure.measurements.docs_gen``
    writes it)."""
    return dictionary_csv(wide_columns(True, [], all_cement_columns()), long_columns(True))
