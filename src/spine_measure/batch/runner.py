"""Run a batch: plan, process the films (serially, in a process pool or on Dask), journal,
assemble and write the outputs.

Outputs in ``OUT``: ``features_wide.csv``, ``measurements_long.csv``, ``data_dictionary.csv``,
``errors.csv``, ``run_manifest.json``, ``overlays/<pseudonym>/<SOPInstanceUID>.png`` and the
``journal/`` that makes the run resumable (``docs/batch.md``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import platform
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from spine_measure import __version__
from spine_measure.batch.clinical import read_clinical
from spine_measure.batch.journal import Journal, atomic_write_bytes
from spine_measure.batch.plan import BatchPlan, plan_batch
from spine_measure.batch.pseudonym import resolve_key
from spine_measure.batch.tables import RESERVED_SUFFIXES, assemble, reserved_columns
from spine_measure.batch.worker import FilmTask, _sha256, preload, process_chunk
from spine_measure.errors import SpineMeasureError
from spine_measure.io.annotation import atomic_write_text
from spine_measure.io.files import describe_os_error
from spine_measure.io.radiograph import explain_exception
from spine_measure.measurements import LongitudinalOptions

__all__ = ["BatchOptions", "BatchOutputError", "BatchSummary", "SchedulerError", "run_batch"]

log = logging.getLogger(__name__)

OUTPUT_FILES = ("features_wide.csv", "measurements_long.csv", "data_dictionary.csv",
                "errors.csv", "run_manifest.json")


@dataclass(frozen=True)
class BatchOptions:
    """Options of a batch run (``spine-measure batch``; ``docs/batch.md``)."""

    input_dir: str
    out_dir: str
    annotations_dir: str | None = None
    clinical: str | None = None
    jobs: int = 1
    scheduler: str | None = None
    scheduler_timeout: float = 10.0
    include_identifiers: bool = False
    pseudonym_key: str | None = None
    pseudonym_key_file: str | None = None
    overlays: bool = True
    postop_window_days: int = 14
    cement_tolerance_mm: float = 1.0
    site: str = "anterior"
    height_loss_threshold_pct: float = 15.0
    kyphosis_threshold_deg: float = 10.0
    refracture_cri_threshold_pct: float = 15.0
    restart: bool = False
    sr: bool = False
    #: A LandmarkErrorModel (``--uncertainty`` / ``--uncertainty-from``): adds the optional
    #: uncertainty columns. Not journalled: the tables are assembled anew on every run.
    uncertainty: Any = None
    cobb: tuple[str, ...] = ()      # sagittal Cobb angles of every lateral film

    def __post_init__(self) -> None:
        from spine_measure.measurements import parse_cobb_spec

        object.__setattr__(self, "cobb", tuple(str(c) for c in self.cobb))
        for c in self.cobb:
            parse_cobb_spec(c)  # LandmarkError (a SpineMeasureError) names the bad one
    accept_proposed: bool = False

    def output_options(self, key: bytes) -> dict[str, Any]:
        """The options that shape the output (hashed into the journal): not ``jobs``,
        ``scheduler``, ``restart`` or ``uncertainty`` (which changes the assembled tables
        only, never a journalled film) -- except with ``sr``, whose journalled SRs carry the
        uncertainty; the key only as a keyed fingerprint."""
        d = asdict(self)
        for k in ("jobs", "scheduler", "scheduler_timeout", "restart", "pseudonym_key",
                  "pseudonym_key_file", "out_dir", "uncertainty"):
            d.pop(k)
        if not d["cobb"]:  # runs made before the option existed keep their hash
            d.pop("cobb")
        if not d["accept_proposed"]:  # runs journalled before the option existed resume
            d.pop("accept_proposed")
        if self.sr and self.uncertainty is not None:  # the journalled SRs carry it
            d["sr_uncertainty"] = self.uncertainty.describe()
        for k in ("input_dir", "annotations_dir", "clinical"):
            if d[k] is not None:
                d[k] = str(Path(d[k]).resolve())
        d["key_fingerprint"] = hmac.new(key, b"spine_measure key check",
                                        hashlib.sha256).hexdigest()[:16]
        return d


@dataclass
class BatchSummary:
    """What a run did, for the CLI's summary and exit code."""

    out_dir: str
    n_films: int = 0
    n_done: int = 0
    n_failed: int = 0
    n_skipped: int = 0
    n_warnings: int = 0
    n_rows: int = 0
    n_from_journal: int = 0
    n_clinical_errors: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    key_source: str = ""
    key_path: str | None = None
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 all measured, 1 some films failed or clinical values were rejected, 3 nothing
        measured (``spine_measure.cli``)."""
        if self.n_done == 0:
            return 3
        return 1 if self.n_failed or self.n_clinical_errors else 0


def _chunks(tasks: list[FilmTask], size: int) -> list[list[FilmTask]]:
    return [tasks[i:i + size] for i in range(0, len(tasks), size)]


class SchedulerError(SpineMeasureError):
    """No Dask scheduler answered at the address given (``--scheduler``)."""


class BatchOutputError(SpineMeasureError):
    """``OUT`` cannot be written (read-only, full, a file, ...); what was journalled is kept."""


def _execute(tasks: list[FilmTask], jobs: int, scheduler: str | None,
             scheduler_timeout: float = 10.0) -> Iterator[dict[str, Any]]:
    """Process ``tasks`` and yield one record per film, in completion order.

    Films are processed in worker processes (even with ``jobs=1``), so a native decoder that
    aborts the process (``SIGABRT`` in GDCM, a segmentation fault) takes down only its
    worker: the films of the lost chunk are run again one per process, and the film that
    kills its process becomes a ``failed`` record; the run carries on.
    """
    if not tasks:
        return
    if scheduler:
        yield from _execute_dask(tasks, scheduler, scheduler_timeout)
        return
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():  # pragma: no cover - Windows
        for t in tasks:
            yield from process_chunk([t])
        return
    size = max(1, min(8, len(tasks) // (max(jobs, 1) * 4) or 1))
    preload(tasks)   # forked workers inherit the imports
    yield from _execute_pool(_chunks(tasks, size), max(1, jobs))


def _execute_pool(chunks: list[list[FilmTask]], jobs: int) -> Iterator[dict[str, Any]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("fork")
    lost: list[FilmTask] = []
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init,
                             initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(process_chunk, c): c for c in chunks}
        for fut in as_completed(futures):
            try:
                records = fut.result()
            except BrokenProcessPool:
                lost.extend(futures[fut])
                continue
            except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled
                log.debug("chunk failed: %s", exc, exc_info=True)
                lost.extend(futures[fut])
                continue
            yield from records
    for task in sorted(lost, key=lambda t: t.key):
        yield _run_isolated(task, ctx)


def _signal_name(code: int | None) -> str:
    import signal

    if code is not None and code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _run_isolated(task: FilmTask, ctx: Any) -> dict[str, Any]:
    """Process one film alone in a fresh process; its death becomes its failed record."""
    recv, send = ctx.Pipe(duplex=False)
    parent = os.getpid()

    def child() -> None:
        _worker_init(parent)
        try:
            out: Any = ("ok", process_chunk([task]))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            out = ("error", explain_exception(exc))
        send.send(out)
        send.close()

    proc = ctx.Process(target=child, daemon=True)
    proc.start()
    send.close()
    try:
        kind, payload = recv.recv()
    except (EOFError, OSError):
        kind, payload = "died", None
    finally:
        recv.close()
        proc.join()
    if kind == "ok":
        return payload[0]
    rec: dict[str, Any] = {"key": task.key, "status": "failed", "warnings": []}
    try:
        rec["sha256"], rec["size"] = _sha256(task.path)
    except OSError:
        pass
    if kind == "died":
        rec.update(stage="decode", reason=(
            f"the worker process reading this film ended abruptly ({_signal_name(proc.exitcode)}"
            "), as a native decoder does on corrupt or inconsistent pixel data; the film was "
            "not measured and the run carried on"))
    else:
        rec.update(stage="measure", reason=f"internal error: {payload}")
    return rec


def _execute_dask(tasks: list[FilmTask], scheduler: str,
                  timeout: float) -> Iterator[dict[str, Any]]:
    try:
        from distributed import Client, as_completed
    except ImportError:  # pragma: no cover - distributed is a dependency
        raise SchedulerError(f"{scheduler}: --scheduler needs the 'distributed' package"
                             ) from None
    try:
        client = Client(scheduler, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, ValueError (address)
        detail = " ".join(str(exc).split())
        reason = (f"no Dask scheduler answered within {timeout:g} s"
                  if "timed out" in detail.lower() or isinstance(exc, TimeoutError)
                  else f"cannot connect ({detail[:120]})")
        raise SchedulerError(f"{scheduler}: {reason}; start one (dask scheduler) or check the "
                             "address; --scheduler-timeout sets the wait") from None
    size = max(1, min(16, len(tasks) // 64 or 1))
    with client:
        chunks = _chunks(tasks, size)
        futures = client.map(process_chunk, chunks, pure=False)
        by_future = dict(zip(futures, chunks, strict=True))
        for fut in as_completed(futures):
            try:
                records = fut.result()
            except Exception as exc:  # noqa: BLE001 - a lost worker: its films are reported
                for t in by_future[fut]:
                    yield {"key": t.key, "status": "failed", "stage": "measure",
                           "warnings": [],
                           "reason": "the Dask worker processing this film was lost ("
                                     f"{explain_exception(exc)}); run again to retry it"}
                continue
            yield from records


def _worker_init(parent: int | None = None) -> None:
    """Workers ignore Ctrl-C: the parent alone handles it (it stops the pool and says how to
    resume) instead of every worker printing its own traceback. A worker whose ``parent``
    dies (killed with SIGKILL, or by the out-of-memory killer) exits instead of waiting for
    work forever: the journal already holds every film finished, and a re-run resumes."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent is not None:
        import threading

        threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True,
                         name="spine-measure-orphan-watch").start()


def _exit_when_orphaned(parent: int, interval_s: float = 0.5) -> None:
    """Poll the parent's pid; end this process at once when it is no longer the parent
    (a forked worker holds both ends of the pool's pipes, so it never sees them close)."""
    while os.getppid() == parent:
        time.sleep(interval_s)
    os._exit(1)


def _versions() -> dict[str, str]:
    out = {"spine_measure": __version__, "python": platform.python_version(),
           "platform": platform.platform()}
    for pkg in ("pydicom", "numpy", "scipy", "pillow", "pylibjpeg", "pylibjpeg-libjpeg",
                "pylibjpeg-openjpeg", "pylibjpeg-rle", "pyjpegls", "python-gdcm", "jsonschema",
                "dask", "distributed"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def run_batch(options: BatchOptions, *,
              on_planned: Callable[[int], None] | None = None,
              on_result: Callable[[dict[str, Any]], None] | None = None,
              on_scan: Callable[[str], None] | None = None) -> BatchSummary:
    """Run the batch described by ``options`` and write its outputs.

    Parameters
    ----------
    on_planned : callable, optional
        Called once with the number of films to process (after journal look-up).
    on_result : callable, optional
        Called with each film's record as it arrives (drives the CLI progress bar).
    on_scan : callable, optional
        Called with each path looked at by the header scan.

    Raises
    ------
    JournalMismatchError
        ``OUT`` holds a run made with other options (pass ``restart=True`` to discard it).
    ClinicalTableError
        The clinical table cannot be read.
    PseudonymKeyError
        The key cannot be used or would be in ``OUT`` (``resolve_key``).
    """
    out = Path(options.out_dir)
    if out.exists() and not out.is_dir():
        raise BatchOutputError(f"{out}: exists and is not a folder; give a folder for --out")
    journalled = [0]
    try:
        return _run_batch(options, out, journalled, on_planned, on_result, on_scan)
    except OSError as exc:
        where = Path(exc.filename) if exc.filename else out
        tmp = re.fullmatch(r"\.(.+)\.[^.]+\.tmp", where.name)  # an atomic write's temporary
        if tmp:
            where = where.with_name(tmp.group(1))
        inside = os.path.abspath(where).startswith(os.path.abspath(out))
        kept = (f"; the {journalled[0]} film(s) measured in this run are kept in "
                f"{out / 'journal'}: fix this and run the same command again to resume"
                if journalled[0] else "")
        what = "cannot write" if inside else "cannot read"
        raise BatchOutputError(f"{where}: {what} ({describe_os_error(exc)}){kept}") from None


def _relative(text: str, prefixes: list[tuple[str, str]]) -> str:
    """``text`` with absolute paths of the input folders written as the user knows them
    (relative to the input folder, as ``docs/batch.md`` promises)."""
    for prefix, shown in prefixes:
        text = text.replace(prefix, shown)
    return text


def _run_batch(options: BatchOptions, out: Path, journalled: list[int],
               on_planned: Callable[[int], None] | None,
               on_result: Callable[[dict[str, Any]], None] | None,
               on_scan: Callable[[str], None] | None) -> BatchSummary:
    t0 = time.perf_counter()
    started = dt.datetime.now(dt.UTC)
    clinical = (read_clinical(options.clinical, reserved=reserved_columns(),
                              reserved_suffixes=RESERVED_SUFFIXES)
                if options.clinical else None)
    pkey = resolve_key(options.pseudonym_key, out, key_file=options.pseudonym_key_file)
    key, key_source = pkey.key, pkey.source
    out.mkdir(parents=True, exist_ok=True)
    long_options = LongitudinalOptions(
        site=options.site, height_loss_threshold_pct=options.height_loss_threshold_pct,
        kyphosis_threshold_deg=options.kyphosis_threshold_deg,
        refracture_cri_threshold_pct=options.refracture_cri_threshold_pct)
    out_opts = options.output_options(key)
    opt_hash = hashlib.sha256(json.dumps(out_opts, sort_keys=True).encode()).hexdigest()
    journal = Journal(out, opt_hash, out_opts, describe=option_changes)
    journal.open(restart=options.restart)
    plan: BatchPlan = plan_batch(options.input_dir, annotations_dir=options.annotations_dir,
                                 key=key, overlays=options.overlays,
                                 cement_tolerance_mm=options.cement_tolerance_mm,
                                 sr=options.sr, identifiers=options.include_identifiers,
                                 accept_proposed=options.accept_proposed, progress=on_scan)
    if options.cobb:  # every film measures the study's Cobb angles
        plan.tasks = [dataclasses.replace(t, cobb=tuple(options.cobb)) for t in plan.tasks]
    if options.sr and options.uncertainty is not None:  # the SRs carry the uncertainty
        plan.tasks = [dataclasses.replace(t, sr_uncertainty=options.uncertainty)
                      for t in plan.tasks]
    prefixes: list[tuple[str, str]] = []
    if options.annotations_dir is not None:
        ann_root = Path(options.annotations_dir)
        for form in {str(ann_root.resolve()), os.path.abspath(ann_root)}:
            prefixes.append((form + os.sep, os.path.join(options.annotations_dir, "")))
    for form in {str(plan.root), os.path.abspath(options.input_dir)}:
        prefixes.append((form + os.sep, ""))
    prefixes.sort(key=lambda p: -len(p[0]))
    plan.issues = [replace(e, reason=_relative(e.reason, prefixes)) for e in plan.issues]
    records: dict[str, dict[str, Any]] = {}
    pending: list[FilmTask] = []
    for t in plan.tasks:
        rec = journal.get(t.key, plan.fingerprints[t.key])
        if rec is None:
            pending.append(t)
        else:
            records[t.key] = rec
    n_from_journal = len(records)
    if on_planned is not None:
        on_planned(len(pending))
    fingerprint = {t.key: plan.fingerprints[t.key] for t in plan.tasks}
    overlay_dir = out / "overlays"
    by_key = {t.key: t for t in plan.tasks}
    for rec in _execute(pending, options.jobs, options.scheduler, options.scheduler_timeout):
        if rec.get("reason"):
            rec["reason"] = _relative(rec["reason"], prefixes)
        rec["warnings"] = [(stage, _relative(text, prefixes))
                           for stage, text in rec.get("warnings", [])]
        png = rec.pop("overlay_png", None)
        key_ = rec["key"]
        t = by_key[key_]
        if png is not None:
            name = (t.sop_instance_uid or hashlib.sha1(key_.encode()).hexdigest()[:20])
            (overlay_dir / t.pseudo_id).mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(overlay_dir / t.pseudo_id / f"{name}.png", png)
            rec["overlay"] = f"overlays/{t.pseudo_id}/{name}.png"
        sr = rec.pop("sr_dicom", None)
        if sr is not None:
            name = (t.sop_instance_uid or hashlib.sha1(key_.encode()).hexdigest()[:20])
            (out / "sr" / t.pseudo_id).mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out / "sr" / t.pseudo_id / f"{name}.sr.dcm", sr)
            rec["sr"] = f"sr/{t.pseudo_id}/{name}.sr.dcm"
        journal.put(key_, fingerprint[key_], rec)
        journalled[0] += 1
        records[key_] = rec
        if on_result is not None:
            on_result(rec)
    overlay_paths = {k: r["overlay"] for k, r in records.items() if r.get("overlay")}
    tables = assemble(plan, records, identifiers=options.include_identifiers,
                      clinical=clinical, long_options=long_options,
                      postop_window_days=options.postop_window_days,
                      overlay_paths=overlay_paths, key=key, cobb=options.cobb,
                      uncertainty=options.uncertainty)
    atomic_write_text(out / "features_wide.csv", tables.wide)
    atomic_write_text(out / "measurements_long.csv", tables.long)
    atomic_write_text(out / "data_dictionary.csv", tables.dictionary)
    atomic_write_text(out / "errors.csv", tables.errors)
    summary = BatchSummary(str(out), n_films=len(plan.tasks), n_done=tables.n_done,
                           n_failed=tables.n_failed, n_skipped=tables.n_skipped,
                           n_warnings=sum(1 for e in tables.error_rows
                                          if e.status == "warning"),
                           n_rows=tables.n_rows, n_from_journal=n_from_journal,
                           n_clinical_errors=tables.n_clinical_errors,
                           key_source=key_source,
                           key_path=None if pkey.path is None else str(pkey.path))
    for e in tables.error_rows:
        # clinical problems are one per line and cell: shown whole, with file:line and value
        text = f"{e.file}: {e.reason}" if e.stage == "clinical" else _short(e.reason)
        summary.reasons[f"{e.status} ({e.stage}): {text}"] += 1
    inputs = [{"file": t.key, "sha256": records[t.key].get("sha256"),
               "size": records[t.key].get("size"),
               "annotation": (plan.annotation_name(t.annotation_path)
                              if t.annotation_path else None),
               "annotation_source": t.annotation_source,
               "annotation_sha256": records[t.key].get("annotation_sha256")}
              for t in plan.tasks if t.key in records]
    manifest = {
        "spine_measure_version": __version__,
        "versions": _versions(),
        "options": {**out_opts, "jobs": options.jobs, "scheduler": options.scheduler,
                    "pseudonym_key_source": key_source,
                    "uncertainty": (None if options.uncertainty is None
                                    else options.uncertainty.describe())},
        "options_hash": opt_hash,
        "inputs": inputs,
        "clinical_table": None if options.clinical is None else
        {"file": str(Path(options.clinical).resolve()), "sha256": _sha(options.clinical)},
        "counts": {"files_scanned": plan.n_files, "films": len(plan.tasks),
                   "done": summary.n_done, "failed": summary.n_failed,
                   "skipped": summary.n_skipped, "warnings": summary.n_warnings,
                   "clinical_errors": summary.n_clinical_errors,
                   "rows_features_wide": summary.n_rows, "from_journal": n_from_journal},
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    atomic_write_text(out / "run_manifest.json", json.dumps(manifest, indent=1) + "\n")
    summary.seconds = manifest["seconds"]
    return summary


#: How the options that shape the output are given on the command line.
OPTION_FLAGS: dict[str, str] = {
    "input_dir": "input folder DIR", "annotations_dir": "--annotations",
    "clinical": "--clinical", "include_identifiers": "--include-identifiers",
    "overlays": "overlays (--no-overlays)", "sr": "--sr",
    "postop_window_days": "--postop-window-days",
    "sr_uncertainty": "--uncertainty / --uncertainty-from (with --sr)",
    "key_fingerprint": "pseudonym key (--pseudonym-key or $SPINE_MEASURE_PSEUDONYM_KEY)",
}


def option_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"--annotations: /a/readerA before, /a/readerB now"`` for every option that differs
    between two runs (the pseudonym key only by name: its fingerprint means nothing)."""
    out = []
    for k in sorted(set(old) | set(new), key=lambda k: (k not in OPTION_FLAGS, k)):
        if old.get(k) == new.get(k):
            continue
        name = OPTION_FLAGS.get(k, k)
        if k == "key_fingerprint":
            out.append(f"{name}: a different key")
            continue
        fmt = {None: "not given", True: "on", False: "off"}
        a = fmt.get(old.get(k), old.get(k)) if isinstance(old.get(k), bool | None) \
            else old.get(k)
        b = fmt.get(new.get(k), new.get(k)) if isinstance(new.get(k), bool | None) \
            else new.get(k)
        out.append(f"{name}: {a} before, {b} now")
    return out


def _short(reason: str) -> str:
    """A reason without file-specific details, for counting in the summary."""
    import re

    text = re.sub(r"\S*/\S*", "<file>", reason)
    text = re.sub(r"\b\d[\d.]{6,}\b", "<uid>", text)
    text = re.sub(r"\d{4}-\d{2}-\d{2}", "<date>", text)
    return text[:110]
