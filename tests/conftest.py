"""Make ``tests/helpers`` importable as ``helpers`` and ``tests/oracle.py`` (the independent
LCN oracle) as ``oracle``, from any test folder (pytest runs in importlib mode)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
