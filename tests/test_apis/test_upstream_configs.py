"""Upstream mmdet/mmseg configs that lcn_mm ships no copy of switch to LCN, both ways.

(a) a few-line user config (``_base_ = 'mmdet::...'``, ``norm_cfg=dict(type='LCN')`` in the
model, ``custom_imports``) and (b) ``tools/train.py UPSTREAM --norm LCN`` are each built in a
fresh process and trained one step on a 64x64 synthetic batch; the LCN layers must sit exactly
where the upstream model had 2-D norms (BN/SyncBN/GN/IN), none of those left, LayerNorms kept.
The config a ``--norm`` run prepared reloads through upstream's ``init_detector``/``init_model``
in a process that never imports lcn_mm by hand. ViT's ``pos_embed`` and a BN ResNet-50
checkpoint load as they do upstream.
"""
from __future__ import annotations

import copy
import json
import math
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import Runner
from torch.nn.modules.batchnorm import _BatchNorm

import lcn_mm
from helpers.upstream_jobs import init_types
from lcn_mm.apis.config import load_config
from lcn_mm.apis.norm_swap import norm_layer_summary

ROOT = Path(__file__).resolve().parents[2]
JOBS_SCRIPT = ROOT / 'tests/helpers/upstream_jobs.py'
CUSTOM_IMPORTS = "custom_imports = dict(imports=['lcn_mm'], allow_failed_imports=False)\n"
LCN = "norm_cfg=dict(type='LCN')"

#: name -> (upstream config, model overrides of the user config, extra tools/train.py flags).
#: Swin Mask R-CNN has no 2-D norm upstream (LN backbone, norm-less FPN and heads), so it is
#: switched where mmdet's gn-all configs add norms: FPN and mask head (``--norm-all``).
UPSTREAM: dict[str, tuple[str, str, list[str]]] = {
    'retinanet': ('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
                  f'backbone=dict({LCN}, norm_eval=False)', []),
    'cascade_mask_rcnn': ('mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py',
                          f'backbone=dict({LCN}, norm_eval=False)', []),
    'fcos': ('mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
             f'backbone=dict({LCN}, norm_eval=False), bbox_head=dict({LCN})', []),
    'swin_mask_rcnn': ('mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
                       f'neck=dict({LCN}), roi_head=dict(mask_head=dict({LCN}))',
                       ['--norm-all']),
    'upernet': ('mmseg::upernet/upernet_r50_4xb2-40k_cityscapes-512x1024.py',
                f'backbone=dict({LCN}), decode_head=dict({LCN}), auxiliary_head=dict({LCN})',
                []),
    'deeplabv3plus': ('mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py',
                      f'backbone=dict({LCN}), decode_head=dict({LCN}), '
                      f'auxiliary_head=dict({LCN})', []),
    'vit_upernet': ('mmseg::vit/vit_vit-b16_mln_upernet_8xb2-80k_ade20k-512x512.py',
                    f'decode_head=dict({LCN}), auxiliary_head=dict({LCN})', []),
}
#: The 2-D norms the Swin user asked for, spelled as GN: upstream's count for those slots.
SWIN_GN = "neck=dict(norm_cfg=dict(type='GN', num_groups=32)), " \
    "roi_head=dict(mask_head=dict(norm_cfg=dict(type='GN', num_groups=32)))"
#: An mmseg child config that only rebinds the base's top-level ``norm_cfg`` variable.
TOP_LEVEL = 'upernet'
TOKEN_NORMS = ('LayerNorm', )


def _user_config(path: Path, base: str, model: str, imports: bool = True,
                 top_level: str = '') -> str:
    path.write_text(f"_base_ = '{base}'\n" + (CUSTOM_IMPORTS if imports else '') + top_level
                    + (f'model = dict({model})\n' if model else ''))
    return str(path)


def _run(args: list[str], cwd: Path, timeout: int = 600) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.fixture(scope='module')
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every (a)/(b)/reference job of UPSTREAM, run in one fresh process."""
    tmp = tmp_path_factory.mktemp('upstream')
    jobs: list[dict] = []
    dumps: dict[str, str] = {}
    for name, (upstream, model, flags) in UPSTREAM.items():
        jobs.append(dict(kind='ref', name=f'{name}:ref', config=upstream))
        jobs.append(dict(kind='user', name=f'{name}:user',
                         config=_user_config(tmp / f'{name}_lcn.py', upstream, model)))
        dumps[name] = str(tmp / f'{name}_prepared.py')
        jobs.append(dict(kind='train', name=f'{name}:train', dump=dumps[name],
                         args=[upstream, '--norm', 'LCN', *flags,
                               '--work-dir', str(tmp / f'work_{name}')]))
    jobs.append(dict(kind='ref', name='swin_mask_rcnn:gn_ref', config=_user_config(
        tmp / 'swin_gn.py', UPSTREAM['swin_mask_rcnn'][0], SWIN_GN, imports=False)))
    top = _user_config(tmp / 'top_level_lcn.py', UPSTREAM[TOP_LEVEL][0], '',
                       top_level="norm_cfg = dict(type='LCN')\n")
    jobs.append(dict(kind='train', name='top_level:train', dump=str(tmp / 'top_prepared.py'),
                     args=[top, '--work-dir', str(tmp / 'work_top')]))
    (tmp / 'jobs.json').write_text(json.dumps(jobs))
    _run([str(JOBS_SCRIPT), str(tmp / 'jobs.json'), str(tmp / 'results.json')], tmp)
    return dict(results=json.loads((tmp / 'results.json').read_text()), dumps=dumps,
                top_config=top, tmp=tmp)


def _result(runs: dict, key: str) -> dict:
    result = runs['results'][key]
    assert 'error' not in result, f'{key}: {result["error"]}'
    return result


def _expected(runs: dict, name: str) -> dict[str, int]:
    """Norm counts after the switch: one LCN per upstream 2-D norm, token norms unchanged."""
    ref = _result(runs, f'{name}:ref')['counts']
    assert 'LCN' not in ref
    two_d = sum(n for cls, n in ref.items() if cls not in TOKEN_NORMS)
    if name == 'swin_mask_rcnn':
        assert two_d == 0
        gn = _result(runs, 'swin_mask_rcnn:gn_ref')['counts']
        two_d = gn['GroupNorm']
        assert two_d == 12  # FPN: 4 lateral + 4 output convs; mask head: 4 convs
    assert two_d > 0
    return {'LCN': two_d, **{cls: n for cls, n in ref.items() if cls in TOKEN_NORMS}}


@pytest.mark.parametrize('name', list(UPSTREAM))
def test_user_config_switches(runs: dict, name: str) -> None:
    """(a) ``_base_`` + ``norm_cfg=dict(type='LCN')`` + custom_imports, fresh process."""
    result = _result(runs, f'{name}:user')
    assert result['counts'] == _expected(runs, name)
    assert math.isfinite(result['loss']) and result['loss'] > 0
    assert result['lcn_mm_after']
    assert result['init_types'] == _result(runs, f'{name}:ref')['init_types']
    assert {cfg['type'] for cfg in result['lcn_norm_cfgs']} == {'LCN'}
    if name == 'fcos':
        # mmengine merges the override into the base's frozen caffe-BN dict, so these LCNs
        # stay frozen (``_delete_=True`` trains them); --norm replaces the dict whole
        assert dict(type='LCN', requires_grad=False) in result['lcn_norm_cfgs']


@pytest.mark.parametrize('name', list(UPSTREAM))
def test_train_norm_flag_switches(runs: dict, name: str) -> None:
    """(b) ``tools/train.py UPSTREAM --norm LCN``: same layers, exactly the preset's cfg."""
    result = _result(runs, f'{name}:train')
    assert result['counts'] == _expected(runs, name)
    assert math.isfinite(result['loss']) and result['loss'] > 0
    assert result['lcn_norm_cfgs'] == [dict(type='LCN')]  # no leaked BN/GN keys
    assert result['init_types'] == _result(runs, f'{name}:ref')['init_types']
    assert 'lcn_mm' in result['custom_imports']['imports']


def test_custom_imports_registers_lcn(runs: dict) -> None:
    """The first user config read in the fresh process imported lcn_mm itself."""
    users = [r for key, r in runs['results'].items() if key.endswith(':user')]
    assert [r['lcn_mm_before'] for r in users].count(False) == 1
    assert all(r['lcn_mm_after'] for r in users)


def test_top_level_norm_cfg_of_mmseg_child(runs: dict) -> None:
    """``norm_cfg = dict(type='LCN')`` at the top of an mmseg child config changes nothing in
    mmengine (the base's dicts are resolved), but tools/train.py applies it everywhere."""
    cfg = Config.fromfile(runs['top_config'])
    assert cfg.norm_cfg.type == 'LCN'
    assert {cfg.model.backbone.norm_cfg.type, cfg.model.decode_head.norm_cfg.type} == {'SyncBN'}
    result = _result(runs, 'top_level:train')
    assert result['counts'] == _expected(runs, TOP_LEVEL)
    # mmengine merges the child's dict into the base's SyncBN one (requires_grad=True stays);
    # the ``_scope_`` it adds to a pkg:: base's top-level dicts must not reach the layers
    assert result['lcn_norm_cfgs'] == [dict(type='LCN', requires_grad=True)]
    assert math.isfinite(result['loss'])


RELOAD = '''
import json, sys
assert 'lcn_mm' not in sys.modules
from mmengine.config import Config
from mmdet.apis import init_detector
from mmseg.apis import init_model
assert 'lcn_mm' not in sys.modules
counts = {}
for name, path in json.loads(sys.argv[1]).items():
    cfg = Config.fromfile(path)
    init = init_detector if cfg.default_scope == 'mmdet' else init_model
    model = init(cfg, None, device='cpu')
    names = [type(m).__name__ for m in model.modules()]
    counts[name] = {n: names.count(n) for n in set(names) if 'Norm' in n or n == 'LCN'}
counts['lcn_mm imported'] = 'lcn_mm' in sys.modules
print(json.dumps(counts))
'''


def test_prepared_config_reloads_upstream(runs: dict) -> None:
    """The config a ``--norm`` run prepared (cfg.dump) builds in upstream's init_detector /
    init_model in a fresh process that does not import lcn_mm by hand (custom_imports does)."""
    dumps = {name: path for name, path in runs['dumps'].items() if Path(path).is_file()}
    assert set(dumps) == set(UPSTREAM)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    proc = subprocess.run([sys.executable, '-c', RELOAD, json.dumps(dumps)], cwd=runs['tmp'],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counts.pop('lcn_mm imported') is True
    for name in UPSTREAM:
        assert counts[name] == _expected(runs, name), name


# --- ViT: pos_embed of a 224-px checkpoint is resized and loaded exactly as upstream --------

VIT = UPSTREAM['vit_upernet'][0]
VIT_SHRINK = dict(num_layers=4, out_indices=(0, 1, 2, 3))  # same for checkpoint and models


def _vit_224_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A 224-px ViT backbone of the config's architecture, random weights, mmseg key layout."""
    backbone = copy.deepcopy(load_config(VIT).model.backbone)
    backbone.update(img_size=224, **VIT_SHRINK)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        vit = MODELS.build(backbone)
    with torch.no_grad():  # non-trivial values (pos_embed/cls_token start at 0)
        for param in vit.parameters():
            param.normal_()
    state = vit.state_dict()
    torch.save(state, path)
    return state


def test_vit_pos_embed_loads_as_upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = tmp_path / 'vit_224.pth'
    state = _vit_224_checkpoint(ckpt)
    assert state['pos_embed'].shape == (1, 1 + 14 * 14, 768)

    # upstream: the config as written, built and initialised by mmseg alone
    ref_cfg = load_config(VIT)
    ref_cfg.model.pretrained = str(ckpt)
    ref_cfg.model.backbone.update(VIT_SHRINK)
    ref_init_types = init_types(ref_cfg.model.to_dict())
    with DefaultScope.overwrite_default_scope('mmseg'):  # (EncoderDecoder edits its cfg)
        ref = revert_sync_batchnorm(MODELS.build(copy.deepcopy(ref_cfg.model)))
    ref.init_weights()

    # ours: tools/train.py --norm LCN; Runner.train initialises (as the real one does) only
    seen: dict = {}
    monkeypatch.setattr(Runner, 'train', lambda self: (self.model.init_weights(),
                                                       seen.update(runner=self)))
    monkeypatch.setattr(sys, 'argv', [
        'train.py', VIT, '--norm', 'LCN', '--work-dir', str(tmp_path / 'work'),
        '--cfg-options', f'model.pretrained={ckpt}', 'model.backbone.num_layers=4',
        'model.backbone.out_indices=(0,1,2,3)'])
    runpy.run_path(str(ROOT / 'tools/train.py'), run_name='__main__')
    runner = seen['runner']
    model = runner.model

    ref_counts, counts = norm_layer_summary(ref), norm_layer_summary(model)
    assert ref_counts['LayerNorm'] == counts['LayerNorm'] == 2 * 4
    assert counts == {'LayerNorm': 8, 'LCN': ref_counts['_BatchNormXd']}
    # no initialiser changed: the config's and the built backbone's
    assert init_types(runner.cfg.model.to_dict()) == ref_init_types
    assert model.backbone.init_cfg == ref.backbone.init_cfg == dict(
        type='Pretrained', checkpoint=str(ckpt))

    from mmseg.models.backbones import VisionTransformer
    resized = VisionTransformer.resize_pos_embed(
        state['pos_embed'], (512 // 16, 512 // 16), (14, 14), 'bicubic')
    assert resized.shape == model.backbone.pos_embed.shape == (1, 1 + 32 * 32, 768)
    assert torch.equal(ref.backbone.pos_embed, resized)
    assert torch.equal(model.backbone.pos_embed, ref.backbone.pos_embed)
    ours, theirs = model.backbone.state_dict(), ref.backbone.state_dict()
    assert ours.keys() == theirs.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(ours[key], theirs[key]), key
        if key != 'pos_embed':
            assert torch.equal(ours[key], value), key


# --- README path: a BN ResNet-50 checkpoint through upstream Pretrained into LCN ------------

def test_bn_resnet50_checkpoint_loads_into_lcn(tmp_path: Path) -> None:
    """User config with ``norm_cfg=dict(type='LCN')`` and upstream ``Pretrained`` init: every
    LCN weight/bias comes from the BN of the same name (``bn1`` -> ``lcn1``)."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        bn_r50 = MODELS.build(dict(type='ResNet', depth=50))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # not the 1/0 LCN starts from, so a skipped norm shows
        for module in bn_r50.modules():
            if isinstance(module, _BatchNorm):
                for tensor in (module.weight, module.bias, module.running_mean):
                    tensor.copy_(torch.randn(tensor.shape, generator=generator))
                module.running_var.uniform_(0.5, 2.0, generator=generator)
    ckpt = tmp_path / 'resnet50_bn.pth'
    state = bn_r50.state_dict()
    torch.save(state, ckpt)

    user = _user_config(
        tmp_path / 'mask_rcnn_lcn.py', 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
        f"backbone=dict({LCN}, norm_eval=False, "
        f"init_cfg=dict(type='Pretrained', checkpoint='{ckpt}'))")
    cfg = Config.fromfile(user)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    model.init_weights()

    lcns = {name: m for name, m in model.backbone.named_modules()
            if isinstance(m, lcn_mm.LCN)}
    assert len(lcns) == sum(isinstance(m, _BatchNorm) for m in bn_r50.modules()) == 53
    assert norm_layer_summary(model.backbone) == {'LCN': 53}
    for name, lcn in lcns.items():
        parent, _, leaf = name.rpartition('.')
        bn_name = '.'.join(filter(None, [parent, re.sub(r'^lcn', 'bn', leaf)]))
        assert torch.equal(lcn.weight, state[f'{bn_name}.weight']), name
        assert torch.equal(lcn.bias, state[f'{bn_name}.bias']), name
    assert torch.equal(model.backbone.conv1.weight, state['conv1.weight'])


def test_limit_rois_caps_every_cascade_stage() -> None:
    """Cascade's ``train_cfg.rcnn`` is one dict per stage; each stage's sampler is capped."""
    from lcn_mm.testing import limit_rois
    cfg = load_config(UPSTREAM['cascade_mask_rcnn'][0])
    assert [stage.sampler.num for stage in cfg.model.train_cfg.rcnn] == [512] * 3
    limit_rois(cfg, 16)
    assert [stage.sampler.num for stage in cfg.model.train_cfg.rcnn] == [16] * 3
    assert cfg.model.train_cfg.rpn_proposal.max_per_img == 16
    assert cfg.model.test_cfg.rcnn.max_per_img == 16
