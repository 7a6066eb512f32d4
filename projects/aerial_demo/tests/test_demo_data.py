"""Tests for the committed demo data (``data/``) and its converter.

Why: the demos train on these tiles, so the counts in ``data/MANIFEST.json`` must match
the files, the files must load through the demo dataset configs, and the converter must
reproduce them from ``../shared/data`` (CI has it next to the repository) and the committed
stardist source files in ``data/nuclei/source/``.

The committed-data tests always run; only the rebuild tests need the shared samples (skipped
with a visible reason locally, a failure under ``CI``).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / 'data'
CONFIGS = REPO / 'projects' / 'aerial_demo' / 'configs' / '_base_' / 'datasets'
SHARED = Path(os.environ.get('LCN_MM_SHARED_DATA', REPO.parent / 'shared' / 'data'))
#: stardist 0.9.2's img2d.tif / mask2d.tif (committed), or its wheel (build_demo_data.py)
NUCLEI_SRC = Path(os.environ.get('LCN_MM_NUCLEI_SRC') or DATA / 'nuclei' / 'source')

COCO_SETS = {'neon_trees': ('tree', ['train', 'val', 'test']),
             'spacenet_buildings': ('building', ['train', 'val']),
             'nuclei': ('nucleus', ['train', 'val'])}
#: COCO sets with instance masks (polygons for buildings, RLE for nuclei)
MASK_SETS = ('spacenet_buildings', 'nuclei')
SEG_SETS = {'buildings': ('background', 'building'), 'roads': ('background', 'road')}
# pycocotools 2.0.11 + numpy 2 warn inside mask decoding; not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

TILE_RE = re.compile(r'(?P<tag>[a-z0-9_]+?)_x(?P<x>\d{4})_y(?P<y>\d{4})\.(jpg|png)$')


def _load_builder() -> ModuleType:
    """Import tools/build_demo_data.py by path (tools/ is not a package)."""
    name = 'build_demo_data'
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, REPO / 'projects/aerial_demo/tools' / f'{name}.py')
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


bdd = _load_builder()


@pytest.fixture(scope='module')
def manifest() -> dict:
    return json.loads((DATA / 'MANIFEST.json').read_text())


def _coco(ds: str, split: str, root: Path = DATA) -> dict:
    return json.loads((root / ds / 'annotations' / f'{split}.json').read_text())


def _label_counts(folder: Path, n_classes: int) -> tuple[int, list[int]]:
    files = sorted(folder.glob('*.png'))
    counts = np.zeros(n_classes, dtype=np.int64)
    for f in files:
        lab = np.asarray(Image.open(f))
        assert lab.dtype == np.uint8 and lab.ndim == 2
        assert lab.max() < n_classes, f'{f} has label {lab.max()}'
        counts += np.bincount(lab.ravel(), minlength=n_classes)
    return len(files), counts.tolist()


# ---------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------
def test_tile_starts_cover_edges_and_stay_inside() -> None:
    assert bdd.tile_starts(0, 900, 256, 256) == [0, 256, 512, 644]
    assert bdd.tile_starts(0, 644, 256, 128) == [0, 128, 256, 384]  # 4 px strip dropped
    assert bdd.tile_starts(644, 900, 256, 256) == [644]
    with pytest.raises(ValueError):
        bdd.tile_starts(0, 200, 256, 128)


def test_clip_box_keeps_half_visible_boxes_only() -> None:
    tile = (0, 0, 256, 256)
    assert bdd.clip_box([10, 10, 20, 20], tile) == [10, 10, 20, 20]
    assert bdd.clip_box([246, 0, 266, 10], tile) == [246, 0, 256, 10]  # exactly 50 %
    assert bdd.clip_box([247, 0, 267, 10], tile) is None  # 45 % inside
    assert bdd.clip_box([300, 0, 310, 10], tile) is None


def test_rasterize_uses_pixel_centres() -> None:
    from shapely.geometry import box
    m = bdd.rasterize([box(1.0, 1.0, 3.4, 2.6)], 4, 5)
    expect = np.zeros((4, 5), bool)
    expect[1:3, 1:3] = True  # centres 1.5, 2.5 inside; 3.5 not
    np.testing.assert_array_equal(m, expect)


# ---------------------------------------------------------------------------
# Committed data agrees with MANIFEST.json (always runs)
# ---------------------------------------------------------------------------
def test_sha256sums_match_committed_files() -> None:
    listed = {}
    for line in (DATA / 'SHA256SUMS').read_text().splitlines():
        digest, rel = line.split('  ', 1)
        listed[rel] = digest
    on_disk = {p.relative_to(DATA).as_posix() for p in DATA.rglob('*')
               if p.is_file() and p.suffix in {'.jpg', '.png', '.json'}
               and p.name != 'MANIFEST.json'}
    assert set(listed) == on_disk
    for rel, digest in listed.items():
        assert hashlib.sha256((DATA / rel).read_bytes()).hexdigest() == digest, rel


@pytest.mark.parametrize('ds', sorted(COCO_SETS))
def test_coco_files_match_manifest(ds: str, manifest: dict) -> None:
    cls, splits = COCO_SETS[ds]
    m = manifest['datasets'][ds]['splits']
    assert sorted(m) == sorted(splits)
    seen_files: set[str] = set()
    for split in splits:
        coco = _coco(ds, split)
        assert [c['name'] for c in coco['categories']] == [cls]
        imgs = {im['id']: im for im in coco['images']}
        files = [p for p in (DATA / ds / 'images' / split).iterdir()
                 if p.suffix in ('.jpg', '.png')]
        assert len(imgs) == m[split]['images'] == len(files)
        assert len(coco['annotations']) == m[split]['instances']
        with_inst = {a['image_id'] for a in coco['annotations']}
        assert len(imgs) - len(with_inst) == m[split]['images_without_instances']
        assert len({a['id'] for a in coco['annotations']}) == len(coco['annotations'])
        for im in coco['images']:
            assert im['file_name'].startswith(f'{split}/')
            w, h = Image.open(DATA / ds / 'images' / im['file_name']).size
            assert (w, h) == (im['width'], im['height'])
            seen_files.add(im['file_name'])
        for a in coco['annotations']:
            im = imgs[a['image_id']]
            x, y, bw, bh = a['bbox']
            assert bw > 0 and bh > 0 and a['area'] > 0 and a['iscrowd'] == 0
            assert (x >= 0 and y >= 0 and x + bw <= im['width'] + 1e-6
                    and y + bh <= im['height'] + 1e-6)
            seg = a.get('segmentation', [])
            if isinstance(seg, dict):  # RLE (nuclei): decodes to the image size, area and box
                import pycocotools.mask as mask_util
                assert seg['size'] == [im['height'], im['width']]
                mask = mask_util.decode({'size': seg['size'], 'counts': seg['counts'].encode()})
                assert int(mask.sum()) == a['area']
                ys, xs = np.nonzero(mask)
                assert [xs.min(), ys.min(), xs.max() + 1 - xs.min(),
                        ys.max() + 1 - ys.min()] == a['bbox']
                continue
            for poly in seg:
                xy = np.asarray(poly).reshape(-1, 2)
                assert len(xy) >= 3
                assert (xy.min() >= 0 and xy[:, 0].max() <= im['width']
                        and xy[:, 1].max() <= im['height'])
        if ds in MASK_SETS:
            assert all(a['segmentation'] for a in coco['annotations'])
    assert len(seen_files) == sum(m[s]['images'] for s in splits)


@pytest.mark.parametrize('sub', sorted(SEG_SETS))
def test_seg_files_match_manifest(sub: str, manifest: dict) -> None:
    classes = SEG_SETS[sub]
    m = manifest['datasets']['spacenet_seg'][sub]
    assert tuple(m['classes']) == classes
    for split in ('train', 'val'):
        root = DATA / 'spacenet_seg' / sub
        n, counts = _label_counts(root / 'ann_dir' / split, len(classes))
        imgs = sorted(p.stem for p in (root / 'img_dir' / split).glob('*.jpg'))
        assert imgs == sorted(p.stem for p in (root / 'ann_dir' / split).glob('*.png'))
        assert n == m['splits'][split]['images']
        assert counts == [m['splits'][split]['pixels'][c] for c in classes]
        assert counts[1] > 0, f'{sub}/{split} has no foreground pixels'


def test_splits_do_not_overlap(manifest: dict) -> None:
    """Region splits: every tile lies inside its own split's region; scenes differ for NEON."""
    tile = manifest['params']['tile']
    for sub in SEG_SETS:
        m = manifest['datasets']['spacenet_seg'][sub]['splits']
        for split in ('train', 'val'):
            x0, y0, x1, y1 = m[split]['region_xyxy']
            for p in (DATA / 'spacenet_seg' / sub / 'img_dir' / split).glob('*.jpg'):
                g = TILE_RE.match(p.name)
                x, y = int(g['x']), int(g['y'])
                assert x0 <= x and x + tile <= x1 and y0 <= y and y + tile <= y1, p
        assert m['train']['region_xyxy'][2] <= m['val']['region_xyxy'][0]
    for ds in MASK_SETS:
        m = manifest['datasets'][ds]['splits']
        assert m['train']['region_xyxy'][2] <= m['val']['region_xyxy'][0]
        for split in ('train', 'val'):
            x0, y0, x1, y1 = m[split]['region_xyxy']
            for im in _coco(ds, split)['images']:
                g = TILE_RE.search(im['file_name'])
                x, y = int(g['x']), int(g['y'])
                assert x0 <= x and x + im['width'] <= x1 and y0 <= y and y + im['height'] <= y1
    tags = {s: {TILE_RE.search(im['file_name'])['tag'] if TILE_RE.search(im['file_name'])
                else im['file_name'] for im in _coco('neon_trees', s)['images']}
            for s in ('train', 'val', 'test')}
    assert tags['train'] == {'yell528'} and tags['val'] == {'yell541'}
    assert not (tags['test'] & (tags['train'] | tags['val']))


# ---------------------------------------------------------------------------
# Committed data loads through the demo dataset configs (always runs)
# ---------------------------------------------------------------------------
def _cfg(name: str):
    from mmengine.config import Config
    return Config.fromfile(str(CONFIGS / f'{name}.py'))


@pytest.mark.parametrize('name', sorted(COCO_SETS))
def test_det_configs_load_committed_data(name: str, manifest: dict,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import mmdet.utils
    from mmdet.registry import DATASETS
    from mmengine.registry import DefaultScope

    import aerial_demo  # noqa: F401  (RandomTranspose; full configs import it themselves)
    monkeypatch.chdir(REPO)  # data_root is relative to the repository root
    mmdet.utils.register_all_modules(init_default_scope=False)
    cfg = _cfg(name)
    m = manifest['datasets'][name]['splits']
    with_masks = name in MASK_SETS
    with DefaultScope.overwrite_default_scope('mmdet'):
        for loader, split in [('train_dataloader', 'train'), ('val_dataloader', 'val'),
                              ('test_dataloader', 'test' if name == 'neon_trees' else 'val')]:
            assert cfg[loader].batch_size in (1, 4) and cfg[loader].num_workers <= 1
            ds = DATASETS.build(cfg[loader].dataset)
            expect = m[split]['images']
            if split == 'train':  # filter_empty_gt drops tiles without objects
                expect -= m[split]['images_without_instances']
            assert len(ds) == expect
            assert ds.metainfo['classes'] == (COCO_SETS[name][0], )
            out = ds[0]
            img = out['inputs']
            gt = out['data_samples'].gt_instances
            assert img.dtype.is_floating_point is False and img.shape[0] == 3
            assert tuple(img.shape[1:]) == tuple(out['data_samples'].img_shape)
            n = len(gt)
            assert n > 0 and tuple(gt.bboxes.shape) == (n, 4)
            assert set(gt.labels.tolist()) == {0}
            assert 'scale_factor' in out['data_samples'].metainfo
            if with_masks:
                # test pipelines load annotations after Resize: in original pixels, like the
                # COCO metric, which rescales predictions back (buildings: images x2)
                meta = out['data_samples'].metainfo
                shape = meta['img_shape'] if split == 'train' else meta['ori_shape']
                assert gt.masks.masks.shape == (n, *shape)
                assert gt.masks.masks.any(axis=(1, 2)).all()


@pytest.mark.parametrize('sub', sorted(SEG_SETS))
def test_seg_configs_load_committed_data(sub: str, manifest: dict,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import mmseg.utils
    import torch
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS
    monkeypatch.chdir(REPO)
    mmseg.utils.register_all_modules(init_default_scope=False)
    cfg = _cfg(f'spacenet_seg_{sub}')
    m = manifest['datasets']['spacenet_seg'][sub]['splits']
    with DefaultScope.overwrite_default_scope('mmseg'):
        for loader, split in [('train_dataloader', 'train'), ('val_dataloader', 'val')]:
            assert cfg[loader].batch_size == 4 and cfg[loader].num_workers <= 1
            ds = DATASETS.build(cfg[loader].dataset)
            assert len(ds) == m[split]['images']
            assert ds.metainfo['classes'] == SEG_SETS[sub]
            ids: set[int] = set()
            for i in range(len(ds)):
                out = ds[i]
                seg = out['data_samples'].gt_sem_seg.data
                assert seg.shape == (1, *out['inputs'].shape[1:]) and out['inputs'].shape[0] == 3
                ids |= set(torch.unique(seg).tolist())
                if i == 0:
                    first = set(torch.unique(seg).tolist())
            assert first <= {0, 1}
            assert ids == {0, 1}


@pytest.mark.parametrize('name', sorted(COCO_SETS))
def test_coco_metric_scores_ground_truth_perfectly(name: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Feeding the val ground truth as predictions through the config's CocoMetric gives AP 1."""
    import mmdet.utils
    import torch
    from mmdet.registry import DATASETS, METRICS
    from mmengine.registry import DefaultScope
    monkeypatch.chdir(REPO)
    mmdet.utils.register_all_modules(init_default_scope=False)
    cfg = _cfg(name)
    with DefaultScope.overwrite_default_scope('mmdet'):
        ds = DATASETS.build(cfg.val_dataloader.dataset)
        metric = METRICS.build(cfg.val_evaluator)
        metric.dataset_meta = ds.metainfo
        for i in range(len(ds)):
            s = ds[i]['data_samples']
            gt = s.gt_instances
            pred = {'bboxes': gt.bboxes.tensor if hasattr(gt.bboxes, 'tensor') else gt.bboxes,
                    'scores': torch.ones(len(gt)), 'labels': gt.labels}
            if 'masks' in gt:
                pred['masks'] = torch.from_numpy(gt.masks.to_ndarray().astype(bool))
            metric.process({}, [{'img_id': s.img_id, 'ori_shape': s.ori_shape,
                                 'pred_instances': pred}])
        res = metric.evaluate(len(ds))
    assert res['coco/bbox_mAP'] == pytest.approx(1.0, abs=1e-3)
    if name in MASK_SETS:
        assert res['coco/segm_mAP'] == pytest.approx(1.0, abs=1e-3)


# ---------------------------------------------------------------------------
# Converter round trip on the real shared samples
# ---------------------------------------------------------------------------
def _require_shared(nuclei: bool = False) -> None:
    missing = []
    if not (SHARED / 'README.md').is_file():
        missing.append(f'shared samples not found at {SHARED} (set LCN_MM_SHARED_DATA)')
    if nuclei and not NUCLEI_SRC.exists():
        missing.append(f'nuclei source not found at {NUCLEI_SRC} (set LCN_MM_NUCLEI_SRC to the '
                       'stardist 0.9.2 wheel or a folder with img2d.tif and mask2d.tif)')
    if not missing:
        return
    if os.environ.get('CI'):
        pytest.fail('; '.join(missing))
    pytest.skip('; '.join(missing))


def test_geotransform_matches_solaris_coco_sample() -> None:
    """Our lon/lat->pixel mapping reproduces the pixel polygons shipped in coco_sample_2.json."""
    _require_shared()
    from shapely.geometry import Polygon, shape
    d = SHARED / 'spacenet-atlanta-buildings'
    _, gt = bdd.read_geotiff(d / 'sample_geotiff.tif')
    ours = [bdd.map_to_pixel(shape(f['geometry']), gt) for f in
            json.loads((d / 'geotiff_labels.geojson').read_text())['features']]
    ref = [Polygon(np.asarray(a['segmentation']).reshape(-1, 2)) for a in
           json.loads((d / 'coco_sample_2.json').read_text())['annotations']]
    assert len(ours) == len(ref) == 43
    for p in ours:
        assert max(p.intersection(q).area / p.union(q).area for q in ref) > 0.999


def test_rebuild_reproduces_committed_data(tmp_path: Path, manifest: dict) -> None:
    """Regenerate everything from ../shared/data + stardist, compare with the committed copy."""
    _require_shared(nuclei=True)
    new = bdd.build_all(SHARED, tmp_path, NUCLEI_SRC)
    assert json.loads(json.dumps(new)) == manifest  # counts of images, instances, pixels
    for ds, (_, splits) in COCO_SETS.items():
        for split in splits:
            assert _coco(ds, split, tmp_path) == _coco(ds, split)
    for sub in SEG_SETS:
        for split in ('train', 'val'):
            old_dir = DATA / 'spacenet_seg' / sub / 'ann_dir' / split
            new_dir = tmp_path / 'spacenet_seg' / sub / 'ann_dir' / split
            names = sorted(p.name for p in old_dir.glob('*.png'))
            assert names == sorted(p.name for p in new_dir.glob('*.png'))
            for n in names:
                np.testing.assert_array_equal(np.asarray(Image.open(old_dir / n)),
                                              np.asarray(Image.open(new_dir / n)))
    # Images: same files; JPEG bytes may differ across libjpeg builds, pixels barely.
    old_imgs = sorted(p.relative_to(DATA).as_posix() for p in DATA.rglob('*.jpg'))
    assert old_imgs == sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob('*.jpg'))
    for rel in old_imgs[::10]:
        a = np.asarray(Image.open(DATA / rel), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / rel), dtype=np.int16)
        assert a.shape == b.shape and np.abs(a - b).mean() < 1.0, rel
    # PNG images (nuclei) are lossless: the same pixels everywhere
    for p in sorted((DATA / 'nuclei' / 'images').rglob('*.png')):
        np.testing.assert_array_equal(np.asarray(Image.open(p)),
                                      np.asarray(Image.open(tmp_path / p.relative_to(DATA))))


def test_nuclei_source_is_checked(tmp_path: Path) -> None:
    """Files other than stardist 0.9.2's img2d.tif/mask2d.tif are refused, not converted."""
    for name in bdd.NUCLEI_SHA256:
        (tmp_path / name).write_bytes(b'not the stardist file')
    with pytest.raises(ValueError, match='not the stardist 0.9.2 file'):
        bdd.read_nuclei_source(tmp_path)
