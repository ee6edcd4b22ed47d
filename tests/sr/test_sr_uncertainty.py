"""``export-sr --uncertainty``: every NUM with an uncertainty carries 1.96 u as its TID 310
upper and lower measurement uncertainty; the SR still reads back with the same values."""

from __future__ import annotations

import math
from pathlib import Path

import pydicom
import pytest

from spine_measure.cli import EXIT_OK, EXIT_USAGE, main

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_dicoms"
POSTOP = SAMPLES / "SM001" / "SM001_postop.dcm"
UPPER, LOWER = "371886008", "371885007"

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="sample_dicoms not present")


def _nums(ds):
    """(concept meaning, value, {uncertainty code: value}) of every NUM in the tree."""
    out = []

    def walk(items):
        for it in items:
            if it.get("ValueType") == "NUM":
                props = {c.ConceptNameCodeSequence[0].CodeValue:
                         float(c.MeasuredValueSequence[0].NumericValue)
                         for c in it.get("ContentSequence", [])
                         if c.get("ValueType") == "NUM"}
                out.append((it.ConceptNameCodeSequence[0].CodeMeaning,
                            float(it.MeasuredValueSequence[0].NumericValue), props))
                continue     # its children are its properties
            walk(it.get("ContentSequence", []))

    walk(ds.ContentSequence)
    return out


def test_sr_nums_carry_the_expanded_uncertainty(tmp_path, capsys):
    from spine_measure.sr.read import read_sr

    plain, withu = tmp_path / "plain", tmp_path / "u"
    assert main(["export-sr", str(POSTOP), "--out", str(plain), "--no-cement"]) == EXIT_OK
    assert main(["export-sr", str(POSTOP), "--out", str(withu), "--no-cement",
                 "--uncertainty", "1.0"]) == EXIT_OK
    (fp,), (fu,) = sorted(plain.glob("*.dcm")), sorted(withu.glob("*.dcm"))
    dp, du = pydicom.dcmread(fp), pydicom.dcmread(fu)
    assert dp.SOPInstanceUID != du.SOPInstanceUID        # other content, other instance
    nums = _nums(du)
    heights = [p for m, _v, p in nums if "anterior" in m.lower() and "height" in m.lower()]
    assert heights and all(p[UPPER] == pytest.approx(1.96 * math.sqrt(2), rel=1e-3)
                           and p[LOWER] == p[UPPER] for p in heights)
    # image size and spacing are exact: no uncertainty on them (read back: none either)
    assert any(not p for m, _v, p in nums if "spacing" in m.lower())
    assert not any(UPPER in p for _m, _v, p in _nums(dp))
    # the values are the same and the SR still reads back
    assert [(m, v) for m, v, _ in _nums(dp)] == [(m, v) for m, v, _ in nums]
    a, b = read_sr(fp), read_sr(fu)
    assert a.vertebrae == b.vertebrae
    # and the uncertainty reads back: 1.96 u per value, none without the option
    assert not a.uncertainty95 and all(f.u95 is None for f in a.film)
    assert b.uncertainty95["L1"]["ha"] == pytest.approx(1.96 * math.sqrt(2), rel=1e-3)
    assert set(b.uncertainty95["L1"]) <= set(b.vertebrae["L1"])


def test_export_sr_refuses_both_sources(tmp_path, capsys):
    assert main(["export-sr", str(POSTOP), "--out", str(tmp_path), "--uncertainty", "1",
                 "--uncertainty-from", str(tmp_path)]) == EXIT_USAGE
    assert "give one of them" in capsys.readouterr().err
