"""Make ``tests/helpers`` importable as ``helpers`` (pytest runs in importlib mode)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
