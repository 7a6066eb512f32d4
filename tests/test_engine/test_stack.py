"""Smoke tests of the pinned OpenMMLab stack that lcn_mm builds on (CPU, a few seconds each).

They check what `make env` promises: mmcv's compiled ops, mmdet and mmseg models that build in
their registry scopes and train one step, and mmengine Runner checkpoints that resume under
torch >= 2.6 thanks to :mod:`lcn_mm.engine.compat`.
"""
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator

import pytest
import torch
import torch.nn as nn
from mmengine.hub import get_config
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope

from lcn_mm.engine import compat


def _total_loss(losses: Dict[str, object]) -> torch.Tensor:
    """Sum an mmdet/mmseg loss dict (values are tensors or lists of tensors) into a scalar."""
    total = torch.zeros(())
    for name, value in losses.items():
        if 'loss' not in name:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            total = total + v.sum()
    return total


def _assert_trains(model: nn.Module, losses: Dict[str, object]) -> None:
    """Backpropagate the losses and check that every trainable parameter got a finite grad."""
    total = _total_loss(losses)
    assert torch.isfinite(total), losses
    assert total.item() > 0
    total.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f'parameters without gradient: {no_grad[:5]}'
    for name, p in model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name
    conv_grad = next(p.grad for n, p in model.named_parameters() if n.startswith('backbone.'))
    assert conv_grad.abs().sum() > 0


# --------------------------------------------------------------------------------- mmcv ops
def test_mmcv_compiled_nms() -> None:
    from mmcv.ops import nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    # IoU(box0, box1) = 81 / 119 = 0.68: suppressed at 0.5, kept at 0.7.
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    assert torch.allclose(dets[:, 4], torch.tensor([0.9, 0.7]))
    assert torch.equal(dets[:, :4], boxes[[0, 2]])
    _, keep = nms(boxes, scores, iou_threshold=0.7)
    assert keep.tolist() == [0, 1, 2]


def test_mmcv_compiled_roi_align() -> None:
    from mmcv.ops import roi_align
    feat = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4).requires_grad_()
    rois = torch.tensor([[0., 0., 0., 4., 4.]])  # (batch index, x1, y1, x2, y2)
    # aligned=True shifts the box by -0.5 px; one sample per 2x2 bin lands on the centre of
    # each 2x2 pixel block, i.e. the block mean.
    out = roi_align(feat, rois, (2, 2), 1.0, 1, 'avg', True)
    assert out.shape == (1, 1, 2, 2)
    assert torch.allclose(out[0, 0], torch.tensor([[2.5, 4.5], [10.5, 12.5]]))
    out.sum().backward()
    # Every pixel contributes to exactly one sample with bilinear weight 1/4.
    assert torch.allclose(feat.grad, torch.full_like(feat, 0.25))


# ------------------------------------------------------------------------------ mmdet model
def _small_mask_rcnn_cfg() -> dict:
    """mmdet's Mask R-CNN R50-FPN config shrunk to ResNet-18 with 32-channel FPN/heads."""
    cfg = get_config('mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py')
    model = cfg.model
    model.backbone.update(depth=18, init_cfg=None, frozen_stages=-1, norm_eval=False)
    model.neck.update(in_channels=[64, 128, 256, 512], out_channels=32)
    model.rpn_head.update(in_channels=32, feat_channels=32)
    roi = model.roi_head
    roi.bbox_roi_extractor.out_channels = 32
    roi.bbox_head.update(in_channels=32, fc_out_channels=64, num_classes=3)
    roi.mask_roi_extractor.out_channels = 32
    roi.mask_head.update(in_channels=32, conv_out_channels=32, num_classes=3)
    return model


def test_mmdet_mask_rcnn_trains_one_step() -> None:
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(_small_mask_rcnn_cfg())
        assert type(model).__name__ == 'MaskRCNN'
        assert model.backbone.depth == 18
        model.train()
        packed = demo_mm_inputs(batch_size=2, image_shapes=[(3, 96, 128), (3, 128, 96)],
                                num_items=[2, 3], num_classes=3, with_mask=True)
        data = model.data_preprocessor(packed, True)
        losses = model(**data, mode='loss')
    expected = {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'loss_mask'}
    assert expected <= set(losses)
    _assert_trains(model, losses)


# ------------------------------------------------------------------------------ mmseg model
def _small_pspnet_cfg() -> dict:
    """mmseg's PSPNet R18-D8 config with BN instead of SyncBN, 16-32 channel heads."""
    cfg = get_config('mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py')
    model = cfg.model
    norm_cfg = dict(type='BN', requires_grad=True)
    model.pretrained = None
    model.data_preprocessor.size = (64, 64)
    model.backbone.norm_cfg = norm_cfg
    model.decode_head.update(channels=32, num_classes=5, norm_cfg=norm_cfg)
    model.auxiliary_head.update(channels=16, num_classes=5, norm_cfg=norm_cfg)
    return model


def test_mmseg_pspnet_trains_one_step() -> None:
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(_small_pspnet_cfg())
        assert type(model).__name__ == 'EncoderDecoder'
        model.train()
        inputs, samples = [], []
        for h, w in [(64, 64), (56, 64)]:
            inputs.append(torch.randint(0, 256, (3, h, w), dtype=torch.uint8))
            sample = SegDataSample()
            sample.gt_sem_seg = PixelData(data=torch.randint(0, 5, (1, h, w)))
            sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w)))
            samples.append(sample)
        data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)
        assert data['inputs'].shape == (2, 3, 64, 64)
        losses = model(**data, mode='loss')
        assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
        _assert_trains(model, losses)

        model.eval()
        with torch.no_grad():
            preds = model.test_step(dict(inputs=inputs[:1], data_samples=samples[:1]))
        assert preds[0].pred_sem_seg.data.shape == (1, 64, 64)


# --------------------------------------------------- mmengine checkpoints under torch 2.13
class _ToyModel(BaseModel):
    """Linear regression model for the Runner checkpoint test."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor, mode: str = 'tensor'):  # noqa: D102
        out = self.linear(x)
        if mode == 'loss':
            return dict(loss=((out - y) ** 2).mean())
        return out


class _ToyDataset(torch.utils.data.Dataset):
    """Eight (x, y) pairs with dataset metainfo, like a real mmengine dataset."""

    metainfo = dict(classes=('a', 'b'), palette=[(1, 2, 3), (4, 5, 6)])

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict:
        return dict(x=torch.full((2,), float(i)), y=torch.ones(1))


def _toy_runner(work_dir: Path, max_iters: int, **kwargs):
    from mmengine.runner import Runner
    return Runner(
        model=_ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=_ToyDataset(), batch_size=2, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=True),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1], by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
        default_scope='mmengine',
        randomness=dict(seed=0),
        experiment_name=f'toy_{work_dir.name}_{max_iters}',
        **kwargs)


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A checkpoint written by mmengine's Runner/CheckpointHook after 2 iterations."""
    work_dir = tmp_path_factory.mktemp('toy_train')
    runner = _toy_runner(work_dir, max_iters=2)
    runner.train()
    ckpt = work_dir / 'iter_2.pth'
    assert ckpt.is_file()
    yield ckpt


@pytest.fixture
def patched_torch_load() -> Iterator[None]:
    """Make sure the compat patch is on for the test and restore the previous state after."""
    was_patched = compat.torch_load_is_patched()
    assert compat.patch_torch_load()
    yield
    if not was_patched:
        compat.unpatch_torch_load()


def test_runner_checkpoint_resumes(runner_checkpoint: Path, patched_torch_load: None,
                                   tmp_path: Path) -> None:
    saved = torch.load(runner_checkpoint, weights_only=False)
    runner = _toy_runner(tmp_path, max_iters=3, resume=True, load_from=str(runner_checkpoint))
    runner.train()
    assert runner.iter == 3  # resumed at iteration 2, then trained one more
    # The resumed weights were the saved ones (momentum SGD moved them in iteration 3).
    assert not torch.equal(runner.model.linear.weight.detach(),
                           saved['state_dict']['linear.weight'])
    history = runner.message_hub.get_scalar('train/loss')
    assert len(history.data[0]) == 3  # 2 losses from the checkpoint + 1 new


def test_runner_checkpoint_needs_compat_patch(runner_checkpoint: Path) -> None:
    """The failure mode that lcn_mm.engine.compat fixes exists on this torch, and the patch is
    scoped."""
    from mmengine.runner import load_checkpoint
    was_patched = compat.torch_load_is_patched()
    compat.unpatch_torch_load()
    try:
        with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
            load_checkpoint(nn.Linear(2, 1), str(runner_checkpoint))
        compat.patch_torch_load()
        load_checkpoint(nn.Linear(2, 1), str(runner_checkpoint))  # works now
        # Callers outside mmengine keep torch's safe default.
        with pytest.raises(pickle.UnpicklingError):
            torch.load(runner_checkpoint)
        # An explicit weights_only=False always works (and the checkpoint is the right one).
        assert torch.load(runner_checkpoint, weights_only=False)['meta']['iter'] == 2
    finally:
        if not was_patched:
            compat.unpatch_torch_load()


def test_import_lcn_mm_applies_compat() -> None:
    """`import lcn_mm` must turn the torch.load fix on (via lcn_mm.engine.compat.apply())."""
    import lcn_mm  # noqa: F401
    assert compat.torch_load_is_patched()


def test_compat_needs_no_mmengine() -> None:
    """lcn_mm.engine.compat imports and applies with mmengine unimportable (plain PyTorch users)."""
    code = (
        "import importlib.util, sys\n"
        "sys.modules['mmengine'] = None  # any `import mmengine` now raises ImportError\n"
        f"spec = importlib.util.spec_from_file_location('compat', {compat.__file__!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "mod.apply()\n"
        "assert mod.torch_load_is_patched()\n"
        "assert not any(m == 'mmengine' or m.startswith('mmengine.') for m in sys.modules\n"
        "               if sys.modules[m] is not None)\n")
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
