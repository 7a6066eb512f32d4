"""Make the project package ``aerial_demo`` importable (it is not installed with lcn_mm)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
