"""CPU demos and the norm study on the real aerial demo data (``data/``).

* :mod:`.tasks` — the three demo tasks (tree detection, building instance segmentation,
  building semantic segmentation), their configs, headline metrics and trivial baselines.
* :mod:`.run` — prepare a demo config (norm, batch size, schedule, seed) and train/evaluate it
  through the mmengine ``Runner`` as mmdet/mmseg ``tools/train.py`` do.
* :mod:`.study` — the resumable multi-norm study
  (``projects/aerial_demo/tools/compare_norms.py``): one JSON line per finished run, markdown
  tables (mean ± std) and plots from whatever is recorded.
"""
from . import transforms  # noqa: F401  (registers RandomTranspose for mmdet and mmseg)
from .run import prepare_cfg, train_and_evaluate
from .tasks import NORMS, TASKS, Task, norm_cfg_for

__all__ = ['NORMS', 'TASKS', 'Task', 'norm_cfg_for', 'prepare_cfg', 'train_and_evaluate']
