"""The core imports without DICOM, ITK, napari or Qt (STYLE: a pure core)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = ("pydicom", "SimpleITK", "napari", "qtpy", "PyQt6", "PyQt5", "PySide6", "highdicom")


def test_core_imports_with_io_and_gui_blocked():
    code = textwrap.dedent(f"""
        import sys
        for name in {BLOCKED!r}:
            sys.modules[name] = None  # any import of it raises ImportError
        import spine_measure.landmarks, spine_measure.geometry, spine_measure.measurements
        from spine_measure.landmarks import SpineLandmarks, Vertebra
        from spine_measure.measurements import measure_film
        v = Vertebra("L1", "lateral", {{"As": (0, 30), "Ai": (20, 30), "Ps": (0, 0),
                                        "Pi": (25, 0)}})
        fm = measure_film(SpineLandmarks("lateral", (v,)), spacing=(0.5, 0.5),
                          calibration_source="pixel_spacing")
        assert fm.get("L1", "ha").value == 10.0
        bad = [m for m in {BLOCKED!r} if sys.modules.get(m) is not None]
        assert not bad, bad
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
