"""Write ``sample_dicoms/README.md``: tables of patients, docs/cement.md coverage and every file."""

from __future__ import annotations

from pathlib import Path

from spine_measure.synthetic.studies import CASES, GeneratedFilm

__all__ = ["write_readme", "coverage"]

_TS = {"explicit": "Explicit VR Little Endian", "j2k": "JPEG 2000 lossless",
       "rle": "RLE lossless", "jpegls": "JPEG-LS lossless"}


def coverage(films: list[GeneratedFilm]) -> dict[str, list[str]]:
    """Sample-set items (cement, calibration, longitudinal events) -> the films (stems)
    whose truth shows them."""
    cov: dict[str, list[str]] = {}

    def add(key: str, stem: str) -> None:
        cov.setdefault(key, [])
        if stem not in cov[key]:
            cov[key].append(stem)

    for g in films:
        t = g.truth
        c = t["cement"]
        if c is not None:
            add(f"cement distribution {c['distribution']}", g.stem)
            add(f"NPEC {c['npec']}", g.stem)
            for lk in c["leaks"]:
                add(f"leak {lk['location']}" + (f" ({lk['type']})" if lk["type"] else ""), g.stem)
        add(f"calibration {t['calibration']['source']}", g.stem)
        add(f"photometric {g.plan.polarity}", g.stem)
        add(f"transfer syntax {_TS[g.plan.transfer_syntax]}", g.stem)
        add(f"view {g.plan.view}" + (f" facing {g.plan.facing}" if g.plan.view == "lateral"
                                      else ""), g.stem)
        if g.plan.rotation_deg:
            add("rotated spine", g.stem)
        if any(v["excluded"] for v in t["vertebrae"]):
            add("excluded (old fracture) neighbour", g.stem)
        if t["findings"]["ivc"]:
            add("IVC (reader finding)", g.stem)
        if g.plan.time_point == "followup" and t["design"].get("recompression_expected"):
            add("recompression at follow-up", g.stem)
        if g.plan.time_point == "followup" and not t["design"].get("recompression_expected"):
            add("stable at follow-up", g.stem)
        frac = [v["level"] for v in t["vertebrae"] if v["fractured"] and not v["excluded"]]
        if g.plan.time_point == "followup" and len(frac) > 1:
            add("new adjacent fracture at follow-up", g.stem)
    return cov


def _calib_attrs(g: GeneratedFilm) -> str:
    h = g.header
    parts = []
    if h.pixel_spacing is not None:
        parts.append(f"PS `{h.pixel_spacing}`")
    if h.pixel_spacing_calibration_type:
        parts.append(f"PSCalType {h.pixel_spacing_calibration_type}")
    if h.imager_pixel_spacing is not None:
        parts.append(f"IPS {h.imager_pixel_spacing:g}")
    if h.ermf is not None:
        parts.append(f"ERMF {h.ermf:g}")
    return ", ".join(parts)


def _content(g: GeneratedFilm) -> str:
    t = g.truth
    if g.plan.view == "ap":
        return f"AP, scoliotic curve, endplate Cobb {t['design']['coronal_cobb_deg']:.1f} deg"
    d = t["design"]["fracture"]
    s = f"{d['shape']} {d['level']} (loss {100 * d['loss_fraction']:.0f} %)"
    c = t["cement"]
    if c is not None:
        s += f"; cement {c['distribution']}, NPEC {c['npec']}"
        if c["leaks"]:
            s += "; leak " + ", ".join(
                lk["location"] + (f" {lk['type']}" if lk["type"] else "") for lk in c["leaks"])
    extra = [v["level"] for v in t["vertebrae"] if v["excluded"]]
    if extra:
        s += f"; excluded {', '.join(extra)}"
    return s


def write_readme(out: Path, films: list[GeneratedFilm], seed: int) -> Path:
    """Write the README of the sample set from the generated films."""
    lines = [
        "# Synthetic sample studies",
        "",
        "Synthetic lateral (and one AP) thoracolumbar radiographs of seven invented patients,",
        "each followed pre-op, immediately post-op (vertebroplasty PVP / kyphoplasty PKP) and at",
        "the last follow-up. Nothing here comes from a real person. Every image `X.dcm` has its",
        "exact ground truth in `X.truth.json` and, with cement, the cement mask `X.cement.png`",
        "(format: `docs/sample_data.md`). `clinical.csv` is the clinical table (docs/batch.md).",
        "",
        "Regenerate (deterministic: same seed, same pixels, headers and truth; a few seconds):",
        "",
        "```",
        f"python -m spine_measure.synthetic sample_dicoms --seed {seed}",
        "```",
        "",
        "Every file passes `dciodvfy` without errors except `SM007_followup.dcm`, a CR export",
        "with `PixelSpacing` `0\\0` on purpose (dciodvfy reports the two zero values as errors;",
        "docs/calibration.md treats the spacing as missing, so the film is uncalibrated).",
        "",
        "## Patients",
        "",
        "| patient | level | procedure | what it covers |",
        "|---|---|---|---|",
    ]
    for c in CASES:
        lines.append(f"| {c.patient_id} | {c.level} | {c.procedure} {c.approach} | "
                     f"{c.summary} |")
    lines += ["", "## Coverage (calibration, longitudinal events, cement)", "",
              "| item | films |", "|---|---|"]
    for k, v in sorted(coverage(films).items()):
        lines.append(f"| {k} | {', '.join(v)} |")
    lines += [
        "", "## Files", "",
        "Calibration attributes: PS PixelSpacing, PSCalType PixelSpacingCalibrationType, IPS",
        "ImagerPixelSpacing, ERMF EstimatedRadiographicMagnificationFactor; *expected* is what",
        "docs/calibration.md derives from them (`calibration` in the truth file).",
        "",
        "| file | time point | date | view | facing | photometric | bits | transfer syntax | "
        "SOP class | size | calibration attributes | expected calibration | content |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in films:
        t = g.truth
        cal = t["calibration"]
        exp = cal["source"] + (f" {cal['row_mm']:.4f} mm" if cal["row_mm"] else "")
        rows, cols = g.film.pixels.shape
        lines.append(
            f"| {g.case.patient_id}/{g.stem}.dcm | {g.plan.time_point} | {t['acquisition_date']}"
            f" | {g.plan.view} | {t['facing'] or '-'} | {g.plan.polarity} | "
            f"{g.plan.bits_stored} | {_TS[g.plan.transfer_syntax]} | {g.header.sop_class} | "
            f"{rows}x{cols} | {_calib_attrs(g)} | {exp} | {_content(g)} |")
    lines.append("")
    path = out / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
