"""The committed documents are what the committed records give (issue #16: tables generated,
not typed): ``tools/analysis_tools/results_report.py --check`` on this checkout."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_results_docs_match_committed_records() -> None:
    proc = subprocess.run([sys.executable, 'tools/analysis_tools/results_report.py', '--check'],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'documents match the records' in proc.stdout
