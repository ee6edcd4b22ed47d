"""The committed sample set: regeneration, validity, ground truth and coverage."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import get_decoder
from scipy import ndimage
from skimage.draw import polygon2mask
from skimage.filters import threshold_otsu
from skimage.measure import label, regionprops

from spine_measure.synthetic.studies import (
    CASES,
    DEFAULT_SEED,
    generate_sample_set,
    render_case_film,
)

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_dicoms"

LATERAL = ("As", "Ai", "Ms", "Mi", "Ps", "Pi")
COMPRESSED = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.80"}
ZERO_SPACING_FILE = "SM007_followup.dcm"  # PixelSpacing 0\0 on purpose (docs/calibration.md)


def _dicoms(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/*.dcm"))


def _display(ds) -> np.ndarray:
    a = ds.pixel_array.astype(float)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        a = (2**ds.BitsStored - 1) - a
    return a


def _header_dict(ds) -> dict:
    return {el.keyword or str(el.tag): str(el.value) for el in ds
            if el.keyword != "PixelData"}


def _cross(a, b) -> float:
    """z of the 2-D cross product ``a x b``."""
    return float(a[0] * b[1] - a[1] * b[0])


# -------------------------------------------------------------------------- regeneration


def test_committed_files_equal_a_fresh_generation(fresh_set):
    committed = [p.relative_to(SAMPLE_DIR) for p in sorted(SAMPLE_DIR.rglob("*")) if p.is_file()]
    fresh = [p.relative_to(fresh_set) for p in sorted(fresh_set.rglob("*")) if p.is_file()]
    assert committed == fresh
    for rel in committed:
        a, b = SAMPLE_DIR / rel, fresh_set / rel
        if rel.suffix == ".dcm":
            da, db = pydicom.dcmread(a), pydicom.dcmread(b)
            assert _header_dict(da) == _header_dict(db), rel
            assert da.file_meta.TransferSyntaxUID == db.file_meta.TransferSyntaxUID
            assert np.array_equal(da.pixel_array, db.pixel_array), rel
        elif rel.suffix == ".png":
            assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), rel
        else:  # truth json, clinical.csv, README.md
            assert a.read_text(encoding="utf-8") == b.read_text(encoding="utf-8"), rel


def test_same_seed_same_output_other_seed_differs(tmp_path):
    one, two, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((one, DEFAULT_SEED + 1), (two, DEFAULT_SEED + 1), (other, DEFAULT_SEED + 2)):
        generate_sample_set(out, seed=seed, patients=["SM007"], write_tables=False)
    for p in _dicoms(one):
        rel = p.relative_to(one)
        a, b, c = (pydicom.dcmread(d / rel) for d in (one, two, other))
        assert _header_dict(a) == _header_dict(b)
        assert np.array_equal(a.pixel_array, b.pixel_array)
        assert a.SOPInstanceUID != c.SOPInstanceUID
        assert a.pixel_array.shape != c.pixel_array.shape or \
            not np.array_equal(a.pixel_array, c.pixel_array)
        ta = (one / rel).with_suffix("").with_suffix(".truth.json").read_text()
        tb = (two / rel).with_suffix("").with_suffix(".truth.json").read_text()
        assert ta == tb


def test_compressed_files_decode_losslessly():
    """Every compressed file decodes (two decoders) to exactly the rendered pixels."""
    n = 0
    rendered: set[str] = set()
    gens = {}
    for case in CASES:
        for plan in case.films:
            gens[f"{case.patient_id}_{plan.suffix}"] = (case, plan)
    for path in _dicoms(SAMPLE_DIR):
        ds = pydicom.dcmread(path)
        if ds.file_meta.TransferSyntaxUID not in COMPRESSED:
            continue
        n += 1
        arr = ds.pixel_array
        decoder = get_decoder(ds.file_meta.TransferSyntaxUID)
        assert len(decoder.available_plugins) >= 2
        for plugin in decoder.available_plugins:  # every installed decoder agrees
            other, _ = decoder.as_array(ds, decoding_plugin=plugin)
            assert np.array_equal(arr, other), f"{path.name} {plugin}"
        stem = path.stem
        syntax = ds.file_meta.TransferSyntaxUID
        if stem in gens and syntax not in rendered:  # one fresh render per syntax
            rendered.add(syntax)
            source = render_case_film(*gens[stem], seed=DEFAULT_SEED).film.pixels
            assert np.array_equal(arr, source), path.name
    assert n >= 6 and rendered == COMPRESSED


@pytest.mark.dicom3tools
def test_every_file_passes_dciodvfy():
    tool = shutil.which("dciodvfy")
    if tool is None:
        if os.environ.get("SPINE_MEASURE_REQUIRE_TOOLS") == "1":
            pytest.fail("dciodvfy (Debian dicom3tools) is required but not installed")
        pytest.skip("dciodvfy (Debian dicom3tools) not installed")
    files = _dicoms(SAMPLE_DIR)
    assert len(files) >= 20
    for p in files:
        out = subprocess.run([tool, str(p)], capture_output=True, text=True, timeout=60)
        errors = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]
        warnings = [ln for ln in (out.stdout + out.stderr).splitlines()
                    if ln.startswith("Warning")]
        if p.name == ZERO_SPACING_FILE:
            # the deliberate PixelSpacing 0\0, and nothing else
            assert len(errors) == 2 and all("Pixel Spacing" in e for e in errors), errors
        else:
            assert errors == [], f"{p.name}: {errors}"
        assert len(warnings) <= 3, f"{p.name}: {warnings}"


def test_total_size_under_25_mb():
    total = sum(p.stat().st_size for p in SAMPLE_DIR.rglob("*") if p.is_file())
    assert total < 25 * 1024 * 1024


# -------------------------------------------------------------------------- headers


def test_headers_are_realistic_dx():
    for p in _dicoms(SAMPLE_DIR):
        ds = pydicom.dcmread(p)
        if ds.Modality == "CR":  # exports with PixelSpacing only
            assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1"
            assert "ImagerPixelSpacing" not in ds
            spacing = [float(x) for x in ds.PixelSpacing]
            if p.name == ZERO_SPACING_FILE:
                assert spacing == [0.0, 0.0]
            else:
                assert 0.1 < spacing[0] == spacing[1] < 0.5
            continue
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1" and ds.Modality == "DX"
        assert ds.PresentationIntentType == "FOR PRESENTATION"
        assert ds.PixelIntensityRelationship == "LOG"
        assert ds.PresentationLUTShape == (
            "IDENTITY" if ds.PhotometricInterpretation == "MONOCHROME2" else "INVERSE")
        assert ds.ViewPosition in ("LL", "AP")
        assert ds.AnatomicRegionSequence[0].CodingSchemeDesignator == "SCT"
        assert 12 <= ds.BitsStored <= 14 and ds.BitsAllocated == 16
        assert int(ds.pixel_array.max()) < 2**ds.BitsStored
        assert "ImagerPixelSpacing" in ds


def _calibration_from_header(ds) -> dict:
    """docs/calibration.md order, written independently of the generator."""

    def ok(v):
        return v is not None and np.isfinite(v) and 0.01 <= v <= 5.0

    ps = [float(x) for x in ds.PixelSpacing] if "PixelSpacing" in ds else None
    ips = [float(x) for x in ds.ImagerPixelSpacing] if "ImagerPixelSpacing" in ds else None
    ermf = float(ds.EstimatedRadiographicMagnificationFactor) \
        if "EstimatedRadiographicMagnificationFactor" in ds else None
    if ps and all(ok(v) for v in ps) and ds.get("PixelSpacingCalibrationType"):
        return {"source": "pixel_spacing_calibrated", "row_mm": ps[0], "col_mm": ps[1]}
    if ips and all(ok(v) for v in ips) and ermf:
        return {"source": "imager_pixel_spacing_ermf", "row_mm": ips[0] / ermf,
                "col_mm": ips[1] / ermf}
    if ips and all(ok(v) for v in ips):
        return {"source": "imager_pixel_spacing", "row_mm": ips[0], "col_mm": ips[1]}
    if ps and all(ok(v) for v in ps):
        return {"source": "pixel_spacing", "row_mm": ps[0], "col_mm": ps[1]}
    return {"source": "uncalibrated", "row_mm": None, "col_mm": None}


# -------------------------------------------------------------------------- ground truth


def test_truth_files_match_their_images(committed_truths):
    for stem, t in committed_truths.items():
        folder = SAMPLE_DIR / t["patient_id"]
        assert t["schema"] == "spine_measure.truth/1"
        assert t["image"] == f"{stem}.dcm"
        ds = pydicom.dcmread(folder / t["image"])
        assert t["sop_instance_uid"] == ds.SOPInstanceUID
        assert t["patient_id"] == ds.PatientID
        assert t["acquisition_date"].replace("-", "") == ds.StudyDate
        exp = _calibration_from_header(ds)
        assert t["calibration"]["source"] == exp["source"], stem
        if exp["row_mm"] is None:
            assert t["calibration"]["row_mm"] is None
        else:
            assert t["calibration"]["row_mm"] == pytest.approx(exp["row_mm"], rel=1e-12)
        for v in t["vertebrae"]:
            names = set(v["points"])
            if t["view"] == "ap":
                assert names == {"SL", "SR", "IL", "IR"}
            elif v["level"] == "S1":
                assert names == {"As", "Ps"}
            else:
                assert names == set(LATERAL)
            for r, c in v["points"].values():
                assert 0 <= r < ds.Rows and 0 <= c < ds.Columns
        if t["cement"] is not None:
            m = np.asarray(Image.open(folder / t["cement"]["mask"]))
            assert m.shape == (ds.Rows, ds.Columns) and set(np.unique(m)) <= {0, 255}
        if t["time_point"] != "followup":
            assert t["findings"]["bone_marrow_oedema"] is None


def test_landmarks_sit_on_the_rendered_bodies(committed_truths):
    for stem, t in committed_truths.items():
        if t["view"] != "lateral":
            continue
        ds = pydicom.dcmread(SAMPLE_DIR / t["patient_id"] / t["image"])
        img = _display(ds)
        sp = t["design"]["render_spacing_mm"]
        rad = 1.0 / sp
        half = int(np.ceil(3 * rad))
        dy, dx = np.mgrid[-half : half + 1, -half : half + 1]

        def mean_at(p, img=img, dy=dy, dx=dx, rad=rad, k=half):
            """Mean of the pixels within ``rad`` of ``p`` (a local window, no full mask)."""
            r0, c0 = int(round(p[0])), int(round(p[1]))
            win = img[r0 - k : r0 + k + 1, c0 - k : c0 + k + 1]
            sel = (dy + r0 - p[0]) ** 2 + (dx + c0 - p[1]) ** 2 <= rad * rad
            return float(win[sel].mean())

        cement = np.zeros(img.shape, bool)
        if t["cement"]:
            cement = np.asarray(Image.open(SAMPLE_DIR / t["patient_id"] / t["cement"]["mask"])) > 0
        vs = [v for v in t["vertebrae"] if v["level"] != "S1"]
        for up, lo in zip(vs[:-1], vs[1:], strict=True):
            P, N = up["points"], lo["points"]
            centre = np.mean([P[k] for k in ("As", "Ai", "Pi", "Ps")], axis=0)
            disc = np.mean([P["Ai"], P["Pi"], N["As"], N["Ps"]], axis=0)
            r0, c0 = int(round(disc[0])), int(round(disc[1]))
            if cement[r0 - half : r0 + half + 1, c0 - half : c0 + half + 1].any():
                continue  # a cement leak in this disc
            for k in ("As", "Ai", "Ps", "Pi"):
                u = (centre - P[k]) / np.hypot(*(centre - P[k]))
                inside = mean_at(np.asarray(P[k]) + u * 2.0 / sp)
                assert inside > mean_at(disc), f"{stem} {up['level']} {k}"


def _polyline_min_distance_px(mask: np.ndarray, polyline: np.ndarray) -> float:
    """Distance from a polyline to the nearest mask pixel centre, via an EDT of ~mask."""
    edt = ndimage.distance_transform_edt(~mask)
    best = np.inf
    for a, b in zip(polyline[:-1], polyline[1:], strict=True):
        for s in np.linspace(0, 1, 400):
            p = a + s * (b - a)
            r, c = int(round(p[0])), int(round(p[1]))
            # the pixel the point falls in, then the exact offset of the point to it
            best = min(best, max(edt[r, c] - np.hypot(p[0] - r, p[1] - c), 0.0))
    return float(best)


def test_cement_truth_npec_and_mask(committed_truths):
    for stem, t in committed_truths.items():
        c = t["cement"]
        if c is None:
            continue
        folder = SAMPLE_DIR / t["patient_id"]
        mask = np.asarray(Image.open(folder / c["mask"])) > 0
        v = next(v for v in t["vertebrae"] if v["level"] == c["level"])["points"]
        assert next(x for x in t["vertebrae"] if x["level"] == c["level"])["treated"]
        sp = t["design"]["render_spacing_mm"]
        sup = np.array([v["Ps"], v["Ms"], v["As"]])
        inf = np.array([v["Pi"], v["Mi"], v["Ai"]])
        d_sup = _polyline_min_distance_px(mask, sup) * sp
        d_inf = _polyline_min_distance_px(mask, inf) * sp
        # unambiguous design: contact well within 1 mm, gaps well beyond
        for d in (d_sup, d_inf):
            assert d < 0.5 or d > 2.0, stem
        assert c["contacts_superior"] == (d_sup <= 1.0), stem
        assert c["contacts_inferior"] == (d_inf <= 1.0), stem
        npec = {(True, True): "none", (False, True): "superior", (True, False): "inferior",
                (False, False): "both"}[(d_sup <= 1.0, d_inf <= 1.0)]
        assert c["npec"] == npec, stem
        # the mask is the bright region of the film
        img = _display(pydicom.dcmread(folder / t["image"]))
        rr, cc = np.nonzero(mask)
        box = np.s_[max(rr.min() - 30, 0): rr.max() + 30, max(cc.min() - 30, 0): cc.max() + 30]
        seg = img[box] > threshold_otsu(img[box])
        dice = 2 * (seg & mask[box]).sum() / (seg.sum() + mask[box].sum())
        assert dice >= 0.95, f"{stem}: Dice {dice:.3f}"
        # distribution: blocky is a solid lump, spongy is not
        poly = np.array([v["As"], v["Ai"], v["Mi"], v["Pi"], v["Ps"], v["Ms"]])
        body = polygon2mask(mask.shape, poly)
        inside = mask & body
        biggest = max(regionprops(label(inside)), key=lambda r: r.area)
        if c["distribution"] == "blocky":
            assert biggest.solidity > 0.85, stem
        else:
            assert biggest.solidity < 0.85 or label(inside).max() > 2, stem
        # leaks: cement beyond 1 mm outside the body iff leaks are listed, at their location
        outside = mask & ~ndimage.binary_dilation(body, iterations=int(np.ceil(1.0 / sp)))
        if not c["leaks"]:
            assert outside.sum() == 0, stem
            continue
        lab = label(outside)
        comps = [r for r in regionprops(lab) if r.area >= 8]
        assert len(comps) == len(c["leaks"]), stem
        for leak in c["leaks"]:
            matches = [r for r in comps if _leak_location(v, r.centroid) == leak["location"]]
            assert len(matches) == 1, f"{stem}: {leak}"
            r = matches[0]
            elong = r.axis_major_length / max(r.axis_minor_length, 1e-6)
            if leak["type"] == "spike":
                assert elong >= 2.2, f"{stem}: spike elongation {elong:.2f}"
            elif leak["type"] == "round":
                assert elong <= 1.8, f"{stem}: round elongation {elong:.2f}"


def _leak_location(v: dict, centroid) -> str:
    """Where a leak component lies relative to the body (lines As-Ps, Ai-Pi, anterior wall)."""
    centre = np.mean([v["As"], v["Ai"], v["Pi"], v["Ps"]], axis=0)
    p = np.asarray(centroid, dtype=float)

    def side(a, b, q):
        return np.sign(_cross(np.subtract(b, a), np.subtract(q, a)))

    if side(v["Ps"], v["As"], p) != side(v["Ps"], v["As"], centre):
        return "superior_disc"
    if side(v["Pi"], v["Ai"], p) != side(v["Pi"], v["Ai"], centre):
        return "inferior_disc"
    if side(v["As"], v["Ai"], p) != side(v["As"], v["Ai"], centre):
        return "anterior"
    return "inside"


def _kyphotic_angle(t, level) -> float:
    """Regional KA: superior endplate above vs inferior endplate below, + = kyphosis."""
    vs = t["vertebrae"]
    i = [v["level"] for v in vs].index(level)
    up, lo = vs[i - 1]["points"], vs[i + 1]["points"]
    a = np.subtract(up["As"], up["Ps"])  # posterior -> anterior
    b = np.subtract(lo["Ai"], lo["Pi"])
    # anterior convergence: the cross product sign relative to the caudal direction
    caud = np.subtract(lo["Pi"], up["Ps"])
    ang = np.degrees(np.arctan2(a[0] * b[1] - a[1] * b[0], a @ b))
    side = np.sign(a[0] * caud[1] - a[1] * caud[0])
    return float(ang * -side)


def test_kyphotic_angle_sign_on_a_hand_example():
    # facing left, superior endplate of the upper vertebra horizontal, inferior endplate of
    # the lower one tilted so that the anterior (left) gap is 10 px smaller over 100 px:
    t = {"vertebrae": [
        {"level": "A", "points": {"Ps": [0, 100], "As": [0, 0]}},
        {"level": "B", "points": {}},
        {"level": "C", "points": {"Pi": [60, 100], "Ai": [50, 0]}},
    ]}
    assert _kyphotic_angle(t, "B") == pytest.approx(np.degrees(np.arctan(10 / 100)))
    # mirrored (facing right): the same angle
    t2 = {"vertebrae": [
        {"level": "A", "points": {"Ps": [0, 0], "As": [0, 100]}},
        {"level": "B", "points": {}},
        {"level": "C", "points": {"Pi": [60, 0], "Ai": [50, 100]}},
    ]}
    assert _kyphotic_angle(t2, "B") == pytest.approx(np.degrees(np.arctan(10 / 100)))


def _ha(t: dict, level: str) -> float:
    """Anterior height |As - Ai| in mm (render spacing) of ``level``."""
    v = next(v for v in t["vertebrae"] if v["level"] == level)["points"]
    return float(np.hypot(*np.subtract(v["As"], v["Ai"])) * t["design"]["render_spacing_mm"])


def test_recompression_and_dates_follow_the_design(committed_truths):
    for case in CASES:
        pid = case.patient_id
        pre, post, fu = (committed_truths[f"{pid}_{tp}"] for tp in ("preop", "postop", "followup"))

        # fracture and partial restoration
        assert _ha(pre, case.level) < _ha(post, case.level)
        hl = (_ha(post, case.level) - _ha(fu, case.level)) / _ha(post, case.level) * 100
        dka = _kyphotic_angle(fu, case.level) - _kyphotic_angle(post, case.level)
        recompressed = hl >= 15 or dka >= 10
        assert recompressed == fu["design"]["recompression_expected"], \
            f"{pid}: height loss {hl:.1f} %, KA change {dka:.1f}"
        if not recompressed:
            assert hl < 10 and dka < 5, pid  # clearly stable, not borderline
        else:
            assert hl >= 17 or dka >= 12, pid  # clearly recompressed
        d = [dt.date.fromisoformat(t["acquisition_date"]) for t in (pre, post, fu)]
        proc = dt.date.fromisoformat(post["procedure_date"])
        assert 1 <= (d[1] - d[0]).days <= 3
        assert d[0] <= proc < d[1]
        assert 182 <= (d[2] - d[1]).days <= 430


def test_coverage_of_spec_items(committed_truths):
    cem = [t["cement"] for t in committed_truths.values() if t["cement"]]
    assert {c["npec"] for c in cem} == {"none", "superior", "inferior", "both"}
    assert {c["distribution"] for c in cem} == {"spongy", "blocky"}
    leaks = {(lk["location"], lk["type"]) for c in cem for lk in c["leaks"]}
    assert {("superior_disc", "spike"), ("inferior_disc", "spike")} & leaks
    assert any(t == "round" for _, t in leaks)
    assert ("anterior", None) in leaks
    sources = {t["calibration"]["source"] for t in committed_truths.values()}
    assert sources == {"pixel_spacing_calibrated", "imager_pixel_spacing_ermf",
                       "imager_pixel_spacing", "pixel_spacing", "uncalibrated"}
    assert {t["facing"] for t in committed_truths.values() if t["view"] == "lateral"} == \
        {"left", "right"}
    assert any(t["design"]["rotation_deg"] for t in committed_truths.values())
    assert any(v["excluded"] for t in committed_truths.values() for v in t["vertebrae"])
    assert {t["findings"]["ivc"] for t in committed_truths.values()} == {True, False}
    fus = [t for t in committed_truths.values() if t["time_point"] == "followup"]
    assert 2 <= sum(t["design"]["recompression_expected"] for t in fus) <= len(fus) - 2
    # AP film with a scoliotic curve: endplate Cobb from its points
    aps = [t for t in committed_truths.values() if t["view"] == "ap"]
    assert aps
    for t in aps:
        ang = [np.degrees(np.arctan2(*np.subtract(v["points"][b], v["points"][a])))
               for v in t["vertebrae"] for a, b in (("SL", "SR"), ("IL", "IR"))]
        assert 15.0 <= max(ang) - min(ang) <= 25.0
    photometric, syntaxes = set(), set()
    for p in _dicoms(SAMPLE_DIR):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        photometric.add(ds.PhotometricInterpretation)
        syntaxes.add(ds.file_meta.TransferSyntaxUID)
    assert photometric == {"MONOCHROME1", "MONOCHROME2"}
    assert syntaxes == COMPRESSED | {"1.2.840.10008.1.2.1"}


def test_clinical_table(committed_truths):
    with open(SAMPLE_DIR / "clinical.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["patient_id", "level", "age", "sex", "bmi", "bmd_t_score",
                             "procedure", "approach", "cement_volume_ml", "procedure_date",
                             "anti_osteoporosis_therapy", "brace"]
    assert len(rows) == len(CASES)
    for r in rows:
        post = committed_truths[f"{r['patient_id']}_postop"]
        assert post["cement"]["level"] == r["level"]
        assert post["procedure_date"] == r["procedure_date"]
        assert r["procedure"] in ("PVP", "PKP") and r["sex"] in ("F", "M")
        assert -5 < float(r["bmd_t_score"]) < 0 and 0 < float(r["cement_volume_ml"]) < 10


def test_readme_lists_every_file():
    text = (SAMPLE_DIR / "README.md").read_text(encoding="utf-8")
    for p in _dicoms(SAMPLE_DIR):
        assert f"{p.parent.name}/{p.name}" in text
    assert "python -m spine_measure.synthetic sample_dicoms" in text
    # truth json is valid JSON everywhere
    for p in SAMPLE_DIR.glob("*/*.truth.json"):
        json.loads(p.read_text(encoding="utf-8"))
