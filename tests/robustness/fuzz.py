"""Seeded fuzzing of the command line: mutated inputs of every family, run in a guarded
worker process that reports crashes, hangs, tracebacks and lost data.

The test suite runs a small campaign (``tests/robustness/test_fuzz.py``); the larger one is a
documented command whose figures go into ``docs/robustness.md``::

    PYTHONPATH=src .venv/bin/python tests/robustness/fuzz.py --cases 600 --seed 18 \\
        --report fuzz_report.json

Families (each case draws one, then one mutation of it):

``dicom``      structure-aware lies written with pydicom (photometric vs samples, rows,
               bits, representation, spacing with one value, character sets, missing
               attributes ...), run through ``info``, ``measure`` and ``export-sr``
``bytes``      raw byte flips (header or pixel data) and truncations of a film
``annotation`` the film's sidecar damaged: deep nesting, duplicate keys, not JSON, not
               UTF-8, truncated, wrong types, huge numbers
``files``      file-system oddities: named pipes, a link to /dev/zero, link loops, dangling
               links, a folder named like a film, an empty file
``landmarks``  ``import-landmarks`` with path traversal, absolute names, odd numbers
``risk``       ``risk apply`` on empty, header-only, binary or odd CSVs and unwritable
               outputs
``output``     ``batch`` into an existing file, a missing folder, under a file size limit

Every ``batch_every``-th case also runs ``batch`` on a mixed folder (one good patient's
films plus the case's bad input) and compares the good patient's ``features_wide.csv`` row
with a clean run's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import resource
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_dicoms"
#: Films mutated (one per transfer syntax) and the good patient of the mixed batches.
SOURCES = ("SM001/SM001_preop.dcm", "SM001/SM001_followup.dcm", "SM001/SM001_postop.dcm",
           "SM004/SM004_preop.dcm", "SM006/SM006_followup.dcm")
GOOD_PATIENT = "SM003"
FUZZ_PATIENT = "FUZZ01"
KEY = "fuzz-key"
TIMEOUT_S = 60.0


# ------------------------------------------------------------------------------------
# Worker: runs CLI commands in-process, one per request, with stdout/stderr captured at
# the file-descriptor level (native libraries write there too).
# ------------------------------------------------------------------------------------


def serve() -> None:  # pragma: no cover - runs in the worker process
    import logging

    from spine_measure.cli import main

    out_fd = os.dup(1)
    reply = os.fdopen(out_fd, "w", buffering=1)
    for line in sys.stdin:
        req = json.loads(line)
        limit = req.get("fsize")
        with tempfile.TemporaryFile() as so, tempfile.TemporaryFile() as se:
            sys.stdout.flush()
            sys.stderr.flush()
            saved = os.dup(1), os.dup(2)
            os.dup2(so.fileno(), 1)
            os.dup2(se.fileno(), 2)
            old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
            exc_text = None
            try:
                if limit:
                    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old_limit[1]))
                rc = _self_test(req["argv"]) if req["argv"][0].startswith("__") \
                    else main(req["argv"])
            except BaseException as exc:  # noqa: BLE001 - this is what the fuzzer looks for
                import traceback

                rc = None
                exc_text = "".join(traceback.format_exception(exc))[-2000:]
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
                sys.stdout.flush()
                sys.stderr.flush()
                for h in logging.getLogger().handlers:
                    with contextlib.suppress(Exception):
                        h.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
            so.seek(0)
            se.seek(0)
            out = so.read(20000).decode("utf-8", "replace")
            err = se.read(20000).decode("utf-8", "replace")
        reply.write(json.dumps({"rc": rc, "stdout": out, "stderr": err,
                                "exception": exc_text}) + "\n")


def _self_test(argv: list[str]) -> int:  # pragma: no cover - runs in the worker process
    """Commands that check the guard itself: abort, raise, hang."""
    if argv[0] == "__abort__":
        os.abort()
    if argv[0] == "__hang__":
        time.sleep(3600)
    raise RuntimeError("a traceback, on purpose")


class Worker:
    """The guarded worker process: restarted after a crash or a hang."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        env = dict(os.environ)
        src = os.environ.get("SPINE_MEASURE_FUZZ_SRC", str(ROOT / "src"))  # other versions
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
        env.setdefault("RUST_BACKTRACE", "0")
        return subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env=env, bufsize=1)

    def run(self, argv: list[str], *, fsize: int | None = None,
            timeout: float = TIMEOUT_S) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps({"argv": argv, "fsize": fsize}) + "\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            proc.kill()
            proc.wait()
            self.proc = None
            return {"rc": None, "outcome": "hang", "stderr": "", "stdout": ""}
        line = proc.stdout.readline()
        if not line:
            code = proc.wait()
            self.proc = None
            return {"rc": code, "outcome": "crash", "stderr": "", "stdout": ""}
        res = json.loads(line)
        res["outcome"] = classify(res)
        return res

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def classify(res: dict[str, Any]) -> str:
    """``traceback`` (an exception escaped, or a traceback was printed), ``bad_exit`` (an
    exit code the documentation does not list), else ``ok``."""
    if res.get("exception") or "Traceback (most recent call last)" in res.get("stderr", ""):
        return "traceback"
    if res.get("rc") not in (0, 1, 2, 3):
        return "bad_exit"
    return "ok"


# ------------------------------------------------------------------------------------
# Generators
# ------------------------------------------------------------------------------------


def _relabel(src: Path, dest: Path, rng: random.Random) -> None:
    """Copy a sample film as the fuzz patient's (new UIDs), with its sidecar annotation."""
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(src)
    uid = generate_uid(entropy_srcs=[str(rng.random())])
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.PatientID = FUZZ_PATIENT
    ds.PatientName = "Fuzz^Case"
    ds.save_as(dest)
    ann = json.loads(src.with_name(src.stem + ".sm.json").read_text())
    ann["image"]["sop_instance_uid"] = uid
    dest.with_name(dest.stem + ".sm.json").write_text(json.dumps(ann, indent=1))


_DICOM_LIES: list[tuple[str, dict[str, Any]]] = [
    ("photometric_rgb", {"PhotometricInterpretation": "RGB"}),
    ("photometric_ybr", {"PhotometricInterpretation": "YBR_FULL"}),
    ("photometric_bogus", {"PhotometricInterpretation": "MONOCHROME3"}),
    ("samples_3", {"SamplesPerPixel": 3}),
    ("rows_65535", {"Rows": 65535}),
    ("rows_1", {"Rows": 1}),
    ("columns_plus_1", {"Columns": "+1"}),
    ("bits_allocated_32", {"BitsAllocated": 32}),
    ("bits_allocated_8", {"BitsAllocated": 8}),
    ("bits_allocated_12", {"BitsAllocated": 12}),
    ("bits_stored_17", {"BitsStored": 17}),
    ("high_bit_20", {"HighBit": 20}),
    ("pixel_representation_7", {"PixelRepresentation": 7}),
    ("frames_0", {"NumberOfFrames": "0"}),
    ("frames_5", {"NumberOfFrames": "5"}),
    ("imager_spacing_one_value", {"ImagerPixelSpacing": "0.15"}),
    ("pixel_spacing_text", {"PixelSpacing": "abc\\def"}),
    ("pixel_spacing_huge", {"PixelSpacing": "1e308\\1e308"}),
    ("ermf_zero", {"EstimatedRadiographicMagnificationFactor": "0"}),
    ("charset_unknown", {"SpecificCharacterSet": "ISO_IR 999"}),
    ("rescale_huge", {"RescaleSlope": "1e38", "RescaleIntercept": "0"}),
    ("window_nan", {"WindowCenter": "nan", "WindowWidth": "0"}),
    ("drop_rows", {"Rows": None}),
    ("drop_photometric", {"PhotometricInterpretation": None}),
    ("drop_bits", {"BitsAllocated": None}),
    ("drop_pixel_data", {"PixelData": None}),
    ("drop_sop_class", {"SOPClassUID": None}),
]


def _dicom_lie(path: Path, rng: random.Random) -> str:
    import pydicom

    name, changes = rng.choice(_DICOM_LIES)
    ds = pydicom.dcmread(path)
    for kw, value in changes.items():
        if value is None:
            if kw in ds:
                delattr(ds, kw)
        elif isinstance(value, str) and value.startswith("+"):
            setattr(ds, kw, int(value))
        elif isinstance(value, str):  # written as stored, whatever pydicom would validate
            from pydicom.datadict import dictionary_VR, tag_for_keyword
            from pydicom.dataelem import RawDataElement
            from pydicom.tag import Tag

            tag = Tag(tag_for_keyword(kw))
            raw = value.encode("latin-1")
            raw += b" " * (len(raw) % 2)
            ds._dict[tag] = RawDataElement(tag, dictionary_VR(tag), len(raw), raw, 0,
                                           False, True)
        else:
            setattr(ds, kw, value)
    if name == "charset_unknown":
        ds.PatientName = "M\xfcller^Fuzz"
    ds.save_as(path)
    return name


def _pixel_offset(data: bytes) -> int:
    i = data.rfind(b"\xe0\x7f\x10\x00")
    return i if i > 0 else len(data) // 2


def _bytes_mutation(path: Path, rng: random.Random) -> str:
    data = bytearray(path.read_bytes())
    px = _pixel_offset(bytes(data))
    kind = rng.choice(["flip_header", "flip_pixels", "truncate_header", "truncate_pixels",
                       "one_byte_short", "zero_block"])
    if kind == "flip_header":
        for _ in range(rng.randint(1, 12)):
            p = rng.randrange(132, max(133, px))
            data[p] ^= rng.randrange(1, 256)
    elif kind == "flip_pixels":
        for _ in range(rng.randint(1, 16)):
            p = rng.randrange(px, len(data))
            data[p] ^= rng.randrange(1, 256)
    elif kind == "truncate_header":
        data = data[:rng.randrange(1, max(2, px))]
    elif kind == "truncate_pixels":
        data = data[:rng.randrange(px, len(data))]
    elif kind == "one_byte_short":
        # shorten the Pixel Data element by one byte, its length field too (native only)
        hdr = bytes(data[px:px + 12])
        if hdr[4:6] == b"OW" or hdr[4:6] == b"OB":
            n = int.from_bytes(hdr[8:12], "little")
            if n != 0xFFFFFFFF:
                data[px + 8:px + 12] = (n - 1).to_bytes(4, "little")
                data = data[:-1]
    else:
        p = rng.randrange(132, len(data))
        data[p:p + 256] = bytes(min(256, len(data) - p))
    path.write_bytes(bytes(data))
    return kind


def _annotation_mutation(ann: Path, rng: random.Random) -> str:
    text = ann.read_text()
    kind = rng.choice(["deep_nesting", "duplicate_landmarks", "duplicate_point", "not_json",
                       "not_utf8", "truncated", "wrong_type", "huge_number", "nan",
                       "empty", "null", "bom", "deep_object"])
    if kind == "deep_nesting":
        d = json.loads(text)
        d["x_unknown"] = "@@"
        text = json.dumps(d).replace('"@@"', "[" * 1000 + "]" * 1000)
    elif kind == "deep_object":
        text = '{"a":' * 5000 + "1" + "}" * 5000
    elif kind == "duplicate_landmarks":
        text = text.rstrip().rstrip("}") + ', "landmarks": {"view": "lateral", ' \
                                           '"vertebrae": []}}'
    elif kind == "duplicate_point":
        text = text.replace('"As": [', '"As": [1.0, 1.0], "As": [', 1)
    elif kind == "not_json":
        text = text[: len(text) // 2] + "{{{" + text[len(text) // 2:]
    elif kind == "not_utf8":
        ann.write_bytes(text.encode("utf-8").replace(b'"reader"', b'"r\xfc\xfcder"', 1)
                        + b"\xff\xfe")
        return kind
    elif kind == "truncated":
        text = text[: rng.randrange(1, len(text))]
    elif kind == "wrong_type":
        d = json.loads(text)
        d["landmarks"] = rng.choice([[], "x", 1, None])
        text = json.dumps(d)
    elif kind == "huge_number":
        text = re.sub(r'("As": \[)\s*[-0-9.eE+]+', r"\g<1>1e308", text, count=1)
    elif kind == "nan":
        text = text.replace('"As": [', '"As": [NaN, ', 1)
    elif kind == "empty":
        text = ""
    elif kind == "null":
        text = "null"
    elif kind == "bom":
        text = "\ufeff" + text
    ann.write_text(text, encoding="utf-8")
    return kind


def _files_oddity(folder: Path, name: str, rng: random.Random) -> str:
    target = folder / name
    for p in (target, target.with_name(target.stem + ".sm.json")):
        if p.is_symlink() or p.exists():
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    kind = rng.choice(["fifo", "fifo_annotation", "dev_zero", "link_loop", "self_link",
                       "annotation_self_link", "dangling", "folder_named_dcm", "empty",
                       "dir_loop"])
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "fifo_annotation":
        shutil.copy(SAMPLE / SOURCES[0], target)
        os.mkfifo(target.with_name(target.stem + ".sm.json"))
    elif kind == "dev_zero":
        os.symlink("/dev/zero", target)
    elif kind == "link_loop":
        other = folder / (target.stem + "_b.dcm")
        if other.is_symlink() or other.exists():
            other.unlink()
        os.symlink(other, target)
        os.symlink(target, other)
    elif kind == "self_link":
        os.symlink(target, target)
    elif kind == "annotation_self_link":
        shutil.copy(SAMPLE / SOURCES[0], target)
        a = target.with_name(target.stem + ".sm.json")
        os.symlink(a, a)
    elif kind == "dangling":
        os.symlink(folder / "does_not_exist.dcm", target)
    elif kind == "folder_named_dcm":
        target.mkdir()
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "dir_loop":
        target.mkdir()
        os.symlink("..", target / "up")
    return kind


def _landmarks_case(case_dir: Path, rng: random.Random) -> tuple[str, list[str], Path]:
    images = case_dir / "images"
    out = case_dir / "out"
    outside = case_dir / "outside"
    images.mkdir()
    outside.mkdir()
    shutil.copy(SAMPLE / "SM001/SM001_postop.dcm", images / "SM001_postop.dcm")
    shutil.copy(SAMPLE / "SM001/SM001_postop.dcm", outside / "SM001_postop.dcm")
    kind = rng.choice(["dotdot", "absolute", "underscore_number", "arabic_digits", "inf",
                       "nan", "huge", "empty_cell", "bad_level", "swapped", "ok",
                       "unwritable_out"])
    name = {"dotdot": "../outside/SM001_postop.dcm",
            "absolute": str(outside / "SM001_postop.dcm")}.get(kind, "SM001_postop.dcm")
    x = {"underscore_number": "1_000", "arabic_digits": "\u0661\u0662\u0663", "inf": "inf",
         "nan": "nan", "huge": "1e308", "empty_cell": ""}.get(kind, "200.5")
    level = "Q9" if kind == "bad_level" else "L1"
    rows = ["image,view,level,point,x,y"]
    for pt, (xx, yy) in {"As": (x, "400"), "Ai": ("205", "480"), "Ps": ("290", "402"),
                         "Pi": ("292", "478")}.items():
        rows.append(f"{name},lateral,{level},{pt},{xx},{yy}")
    csv_path = case_dir / "lm.csv"
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    if kind == "unwritable_out":
        out.write_text("a file where the folder should be")
    return kind, ["import-landmarks", str(csv_path), "--images", str(images), "--out",
                  str(out)], outside


def _risk_case(case_dir: Path, rng: random.Random, wide: Path) -> tuple[str, list[str]]:
    kind = rng.choice(["empty", "newline", "header_only", "binary", "text_values",
                       "ok", "out_folder", "out_missing_dir", "latin1"])
    csv_path = case_dir / "features.csv"
    out = case_dir / "risk.csv"
    if kind == "empty":
        csv_path.write_bytes(b"")
    elif kind == "newline":
        csv_path.write_bytes(b"\n")
    elif kind == "header_only":
        csv_path.write_text(wide.read_text().splitlines()[0] + "\n")
    elif kind == "binary":
        csv_path.write_bytes(bytes(rng.randrange(256) for _ in range(2000)))
    elif kind == "latin1":
        csv_path.write_bytes(wide.read_bytes().replace(b",", b"\xfc,", 3))
    elif kind == "text_values":
        lines = wide.read_text().splitlines()
        head = lines[0].split(",")
        vals = ["abc" if i % 3 == 0 else v for i, v in enumerate(lines[1].split(","))]
        csv_path.write_text(",".join(head) + "\n" + ",".join(vals[:len(head)]) + "\n")
    else:
        shutil.copy(wide, csv_path)
    if kind == "out_folder":
        out.mkdir()
    elif kind == "out_missing_dir":
        out = case_dir / "missing" / "risk.csv"
    return kind, ["risk", "apply", str(csv_path), "--model", "li2021", "-o", str(out)]


# ------------------------------------------------------------------------------------
# Campaign
# ------------------------------------------------------------------------------------


@dataclass
class CaseResult:
    case: int
    family: str
    mutation: str
    command: str
    outcome: str
    rc: int | None
    detail: str = ""


@dataclass
class Campaign:
    seed: int
    cases: int
    results: list[CaseResult] = field(default_factory=list)
    seconds: float = 0.0

    def problems(self) -> list[CaseResult]:
        return [r for r in self.results if r.outcome != "ok"]

    def summary(self) -> dict[str, Any]:
        by = Counter(r.outcome for r in self.results)
        fam = Counter(family for _case, family in {(r.case, r.family) for r in self.results})
        return {"seed": self.seed, "cases": self.cases, "command_runs": len(self.results),
                "batch_runs": sum(1 for r in self.results if r.command == "batch"),
                "cases_by_family": dict(sorted(fam.items())),
                "runs_by_command": dict(sorted(Counter(r.command for r in self.results)
                                               .items())),
                "outcomes": dict(sorted(by.items())), "seconds": round(self.seconds, 1)}


def _good_rows(out: Path) -> list[str]:
    """Rows of ``features_wide.csv`` that are not the fuzz patient's (by pseudonym)."""
    from spine_measure.batch.pseudonym import pseudonym

    wide = out / "features_wide.csv"
    if not wide.is_file():
        return ["<no features_wide.csv>"]
    lines = wide.read_text().splitlines()
    fuzz = pseudonym(FUZZ_PATIENT, KEY.encode())
    return [ln for ln in lines[1:] if fuzz not in ln]


def _record(camp: Campaign, case: int, family: str, mutation: str, argv: list[str],
            res: dict[str, Any], detail: str = "") -> None:
    if res["outcome"] != "ok":
        detail = (res.get("exception") or res.get("stderr") or "")[-600:] + detail
    camp.results.append(CaseResult(case, family, mutation, argv[0] if argv[0] != "risk"
                                   else "risk apply", res["outcome"], res.get("rc"), detail))


def run_campaign(seed: int, cases: int, work: Path, *, batch_every: int = 5,
                 families: tuple[str, ...] = ("dicom", "bytes", "annotation", "files",
                                              "landmarks", "risk", "output"),
                 log: Any = None) -> Campaign:
    """Run ``cases`` seeded cases in ``work``; see the module docstring."""
    t0 = time.perf_counter()
    camp = Campaign(seed, cases)
    worker = Worker()
    good = work / "good"
    good.mkdir(parents=True)
    for f in sorted((SAMPLE / GOOD_PATIENT).glob("*.dcm")):
        shutil.copy(f, good / f.name)
        shutil.copy(f.with_name(f.stem + ".sm.json"), good / (f.stem + ".sm.json"))
    clean_out = work / "clean_out"
    res = worker.run(["batch", str(good), "--out", str(clean_out), "--pseudonym-key", KEY,
                      "--no-progress", "--no-overlays"])
    if res["outcome"] != "ok" or res["rc"] != 0:
        raise RuntimeError(f"the clean batch failed: {res}")
    clean_rows = _good_rows(clean_out)
    try:
        for i in range(cases):
            rng = random.Random(seed * 100_003 + i)
            family = families[i % len(families)] if i < len(families) else \
                rng.choice(families)
            case_dir = work / f"case{i:04d}"
            case_dir.mkdir()
            bad_dir = case_dir / "in"
            bad_dir.mkdir()
            film = bad_dir / "fuzz.dcm"
            mutation = ""
            runs: list[list[str]] = []
            if family in ("dicom", "bytes", "annotation"):
                _relabel(SAMPLE / rng.choice(SOURCES), film, rng)
                if family == "dicom":
                    mutation = _dicom_lie(film, rng)
                elif family == "bytes":
                    mutation = _bytes_mutation(film, rng)
                else:
                    mutation = _annotation_mutation(film.with_name("fuzz.sm.json"), rng)
                runs = [["info", str(film)], ["measure", str(film)],
                        ["export-sr", str(film), "--out", str(case_dir / "sr")]]
            elif family == "files":
                mutation = _files_oddity(bad_dir, "fuzz.dcm", rng)
                runs = [["info", str(bad_dir)], ["measure", str(film)]]
            elif family == "landmarks":
                mutation, argv, outside = _landmarks_case(case_dir, rng)
                before = sorted(p.name for p in outside.iterdir())
                res = worker.run(argv)
                after = sorted(p.name for p in outside.iterdir())
                escaped = [p for p in after if p not in before]
                if res["outcome"] == "ok" and escaped:
                    res["outcome"] = "escaped"
                _record(camp, i, family, mutation, argv, res,
                        f" wrote outside --out: {escaped}" if escaped else "")
            elif family == "risk":
                mutation, argv = _risk_case(case_dir, rng, clean_out / "features_wide.csv")
                _record(camp, i, family, mutation, argv, worker.run(argv))
            elif family == "output":
                _relabel(SAMPLE / rng.choice(SOURCES), film, rng)
                mutation = rng.choice(["out_is_file", "out_parent_is_file", "fsize_limit"])
                out = case_dir / "out"
                if mutation == "out_is_file":
                    out.write_text("x")
                elif mutation == "out_parent_is_file":
                    (case_dir / "f").write_text("x")
                    out = case_dir / "f" / "out"
                argv = ["batch", str(bad_dir), "--out", str(out), "--pseudonym-key", KEY,
                        "--no-progress"]
                res = worker.run(argv, fsize=20_000 if mutation == "fsize_limit" else None)
                _record(camp, i, family, mutation, argv, res)
                if mutation == "fsize_limit" and res["outcome"] == "ok":
                    # the run can resume once the limit is gone: same command, full result
                    res2 = worker.run(argv)
                    if res2["outcome"] == "ok" and not (out / "features_wide.csv").is_file():
                        res2["outcome"] = "lost_data"
                    _record(camp, i, family, mutation + "_resume", argv, res2)
            for argv in runs:
                _record(camp, i, family, mutation, argv, worker.run(argv))
            if family in ("dicom", "bytes", "annotation", "files") and i % batch_every == 0:
                mixed = case_dir / "mixed"
                shutil.copytree(good, mixed, symlinks=True)
                for p in bad_dir.iterdir():
                    dest = mixed / p.name
                    if p.is_symlink() or not p.is_file():
                        if p.is_symlink():
                            os.symlink(os.readlink(p), dest)
                        elif p.is_dir():
                            shutil.copytree(p, dest, symlinks=True)
                        else:
                            os.mkfifo(dest)
                    else:
                        shutil.copy(p, dest)
                out = case_dir / "batch_out"
                argv = ["batch", str(mixed), "--out", str(out), "--pseudonym-key", KEY,
                        "--no-progress", "--no-overlays"]
                res = worker.run(argv)
                detail = ""
                if res["outcome"] == "ok":
                    rows = _good_rows(out)
                    if rows != clean_rows:
                        res["outcome"] = "lost_data"
                        detail = f" good rows differ: {rows[:1]} vs {clean_rows[:1]}"
                    rerun = worker.run(argv)  # a re-run resumes, never aborts
                    if rerun["outcome"] != "ok":
                        res = rerun
                _record(camp, i, family, mutation, argv, res, detail)
            if log is not None:
                log(i, family, mutation, [r.outcome for r in camp.results if r.case == i])
            if not os.environ.get("SPINE_MEASURE_FUZZ_KEEP"):
                shutil.rmtree(case_dir, ignore_errors=True)
    finally:
        worker.close()
    camp.seconds = time.perf_counter() - t0
    return camp


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=600)
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--batch-every", type=int, default=5)
    ap.add_argument("--report", type=Path, default=None, help="JSON report (all runs).")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve()
        return 0
    with tempfile.TemporaryDirectory(prefix="sm_fuzz_") as tmp:
        def progress(i: int, family: str, mutation: str, outcomes: list[str]) -> None:
            bad = [o for o in outcomes if o != "ok"]
            if bad or i % 25 == 0:
                print(f"case {i}: {family}/{mutation}: {outcomes}", file=sys.stderr)

        camp = run_campaign(args.seed, args.cases, Path(tmp), batch_every=args.batch_every,
                            log=progress)
    summary = camp.summary()
    print(json.dumps(summary, indent=1))
    for r in camp.problems():
        print(f"PROBLEM case {r.case} {r.family}/{r.mutation} {r.command}: {r.outcome} "
              f"rc={r.rc} {r.detail[-300:]}")
    if args.report is not None:
        args.report.write_text(json.dumps({"summary": summary,
                                           "runs": [asdict(r) for r in camp.results]},
                                          indent=1) + "\n")
    return 1 if camp.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
