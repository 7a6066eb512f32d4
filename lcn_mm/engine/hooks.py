"""Crash-safe checkpoints: ``AtomicCheckpointHook`` and :func:`atomic_write_bytes`.

mmengine 0.10.7 writes a checkpoint with ``open(path, 'wb').write(bytes)`` and, with
``max_keep_ckpts``, deletes the oldest checkpoint *before* writing the new one. A process killed
while saving (preemption, OOM killer, Ctrl-C) can therefore leave a truncated ``iter_N.pth``
and, with ``max_keep_ckpts=1``, no loadable checkpoint at all. ``AtomicCheckpointHook``
(registered in mmengine's root ``HOOKS``, usable from any scope) is a drop-in for
``CheckpointHook`` that

1. writes every local file it saves (checkpoints, best and published checkpoints) to a temporary
   file in the same directory, ``fsync``\\ s it and ``os.replace``\\ s it onto the final name,
   so a checkpoint file is either absent or complete;
2. updates ``last_checkpoint`` (what ``--resume`` reads) the same way, only after the checkpoint
   is in place;
3. deletes checkpoints beyond ``max_keep_ckpts`` only after the new one is safely written.

``tools/train.py`` turns every ``CheckpointHook`` into this hook. Remote backends (``s3://``,
...) keep mmengine's behaviour: only local paths are written atomically.
"""
from __future__ import annotations

import contextlib
import os
import os.path as osp
import uuid
from typing import Iterator, Optional, Union

from mmengine.dist import is_main_process
from mmengine.fileio.backends.local_backend import LocalBackend
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS
from mmengine.runner import find_latest_checkpoint

from ..apis.checkpoint import check_checkpoint

__all__ = ['atomic_write_bytes', 'atomic_local_writes', 'AtomicCheckpointHook',
           'CheckCheckpointHook']


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(data: Union[bytes, bytearray, memoryview], path: Union[str, os.PathLike]
                       ) -> None:
    """Write ``data`` to ``path`` so that ``path`` is never seen half-written.

    The bytes go to ``.<name>.<random>.tmp`` next to ``path`` (same file system), are flushed
    and ``fsync``\\ ed, then ``os.replace`` (atomic on POSIX and Windows) renames the file onto
    ``path``. On any error, including ``KeyboardInterrupt``, the temporary file is removed and
    the old ``path`` (if any) is untouched. File permissions follow the umask, as ``open``'s.
    """
    path = os.fspath(path)
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = osp.join(directory, f'.{osp.basename(path)}.{uuid.uuid4().hex[:12]}.tmp')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0), 0o666)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _atomic_put(self: LocalBackend, obj: bytes, filepath) -> None:
    atomic_write_bytes(obj, filepath)


@contextlib.contextmanager
def atomic_local_writes() -> Iterator[None]:
    """Within the block, mmengine's local file backend writes files atomically.

    ``mmengine.runner.checkpoint.save_checkpoint`` serializes to memory and then calls
    ``LocalBackend.put``; this swaps ``put`` for :func:`atomic_write_bytes` (not re-entrant
    across threads; the hooks run in the training thread).
    """
    original = LocalBackend.put
    LocalBackend.put = _atomic_put  # type: ignore[method-assign]
    try:
        yield
    finally:
        LocalBackend.put = original  # type: ignore[method-assign]


@HOOKS.register_module(name='AtomicCheckpointHook', force=True)
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose saves survive a kill at any point (same arguments).

    See the module docstring. With ``max_keep_ckpts=k`` up to ``k + 1`` checkpoints exist for
    the moment between writing the new one and deleting the oldest.
    """

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        with atomic_local_writes():
            super().after_train_iter(runner, batch_idx, data_batch, outputs)

    def after_train_epoch(self, runner) -> None:
        with atomic_local_writes():
            super().after_train_epoch(runner)

    def after_val_epoch(self, runner, metrics) -> None:
        with atomic_local_writes():
            super().after_val_epoch(runner, metrics)

    def after_train(self, runner) -> None:
        with atomic_local_writes():
            super().after_train(runner)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        # As CheckpointHook, but: save (atomically), then point last_checkpoint at it
        # (atomically), and only then delete the checkpoint that fell out of max_keep_ckpts.
        to_remove = None
        if self.max_keep_ckpts > 0 and not (
                len(self.keep_ckpt_ids) > 0 and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                to_remove = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)

        with atomic_local_writes():
            runner.save_checkpoint(
                self.out_dir, ckpt_filename, self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta,
                by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)

        if not is_main_process():
            return
        atomic_write_bytes(str(self.last_ckpt).encode(),
                           osp.join(runner.work_dir, 'last_checkpoint'))
        if to_remove is not None and to_remove != step:
            old = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(to_remove))
            if self.file_backend.isfile(old):
                self.file_backend.remove(old)
            elif self.file_backend.isdir(old):  # deepspeed checkpoints are directories
                self.file_backend.rmtree(old)


@HOOKS.register_module(name='CheckCheckpointHook', force=True)
class CheckCheckpointHook(Hook):
    """Before the run loads a checkpoint, check it with :func:`check_checkpoint`.

    Args:
        checkpoint: the file; ``None`` means the latest in the work dir (``--resume``).
        strict: also require that it fits the model (every key, every shape); otherwise
            only that it can be read (fine-tuning from ``load_from`` may load a subset).
        what: how to name it in the message.
    """

    priority = 'VERY_HIGH'

    def __init__(self, checkpoint: Optional[str] = None, strict: bool = True,
                 what: str = 'checkpoint') -> None:
        self.checkpoint, self.strict, self.what = checkpoint, strict, what

    def before_run(self, runner) -> None:
        path = self.checkpoint or find_latest_checkpoint(runner.work_dir)
        if path:
            check_checkpoint(path, runner.model if self.strict else None, self.what)
