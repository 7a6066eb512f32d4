"""Makes ``tests/oracle.py`` (the independent LCN oracle) importable as ``oracle`` under
pytest's importlib mode, from any test folder below this one."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
