"""The seeded fuzz campaign of the suite (issue 18, "Must show"): mutated inputs of every
family through ``info``, ``measure``, ``export-sr``, ``batch`` (a mixed folder: one bad input
among good films), ``import-landmarks`` and ``risk apply``; 0 crashes, 0 hangs, 0 tracebacks,
and the good films' rows of every mixed batch identical to a clean run.

Bounded to about two minutes on two cores. The larger run of the same generator is a
documented command (``docs/robustness.md``)::

    PYTHONPATH=src .venv/bin/python tests/robustness/fuzz.py --cases 600 --seed 18
"""

from __future__ import annotations

import pytest
from fuzz import run_campaign

CASES = 70
SEED = 18


@pytest.mark.slow
def test_seeded_fuzz_campaign(tmp_path):
    camp = run_campaign(SEED, CASES, tmp_path, batch_every=5)
    summary = camp.summary()
    assert set(summary["cases_by_family"]) == {"dicom", "bytes", "annotation", "files", "landmarks",
                                         "risk", "output"}
    commands = {r.command for r in camp.results}
    assert commands >= {"info", "measure", "export-sr", "batch", "import-landmarks",
                        "risk apply"}
    assert summary["batch_runs"] >= 8
    problems = [f"case {r.case} {r.family}/{r.mutation} {r.command}: {r.outcome} rc={r.rc} "
                f"{r.detail[-400:]}" for r in camp.problems()]
    assert not problems, "\n".join(problems)


def test_the_campaign_is_seeded(tmp_path):
    """Same seed, same cases: the generator draws the same mutations."""
    a = run_campaign(3, 4, tmp_path / "a", batch_every=100, families=("dicom", "bytes"))
    b = run_campaign(3, 4, tmp_path / "b", batch_every=100, families=("dicom", "bytes"))
    assert [(r.family, r.mutation, r.command) for r in a.results] == \
        [(r.family, r.mutation, r.command) for r in b.results]


def test_the_guard_sees_a_crash_and_a_traceback(tmp_path):
    """The fuzzer's own checks can fail: a command that aborts is a crash, one that raises
    is a traceback (so 0 problems above means something)."""
    from fuzz import Worker

    w = Worker()
    try:
        res = w.run(["info", "--this-option-does-not-exist"])
        assert res["outcome"] == "ok" and res["rc"] == 2
        res = w.run(["__abort__"])
        assert res["outcome"] == "crash"
        res = w.run(["__raise__"])
        assert res["outcome"] == "traceback"
        res = w.run(["__hang__"], timeout=2)
        assert res["outcome"] == "hang"
    finally:
        w.close()
