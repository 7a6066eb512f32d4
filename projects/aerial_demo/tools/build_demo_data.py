#!/usr/bin/env python
"""Build the small demo datasets in ``data/`` from the real samples in ``../shared/data``.

Why this exists: the demos and CI must run offline on a CPU, so we commit a few MB of
tiles cut from real overhead imagery (NEON trees, SpaceNet buildings and roads) and one
real fluorescence microscopy image with labelled nuclei (the instance-segmentation task)
in the formats MMDetection (COCO) and MMSegmentation (``img_dir``/``ann_dir``) read natively.

The conversion is deterministic: a fixed tile grid, fixed percentile stretch per scene,
fixed JPEG/PNG encoder settings, and JSON written with sorted keys and rounded floats.
Run it twice and the bytes are the same (on the same Pillow/GEOS versions; the label
PNG pixels and all counts are the same everywhere).

Usage (from the repository root)::

    python projects/aerial_demo/tools/build_demo_data.py --src ../shared/data --out data/

The nuclei image and its labels come from the stardist 0.9.2 wheel (BSD-3); the two source
files are committed in ``data/nuclei/source/`` with the wheel's licence, so the rebuild needs
nothing but this repository and ``../shared/data``. ``--nuclei-src`` also takes the wheel
itself (``pip download --no-deps stardist==0.9.2``, read with zipfile) or another folder
holding ``img2d.tif`` and ``mask2d.tif``; either way their SHA-256 is checked, and the script
downloads nothing.

Only the generated sub-folders (``images/``, ``annotations/``, ``img_dir/``, ``ann_dir/``)
and ``MANIFEST.json`` / ``SHA256SUMS`` are rewritten; hand-written ``README.md`` and
licence notes under ``data/`` are left alone.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pycocotools.mask as mask_util
import shapely
import tifffile
from PIL import Image
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon, box, shape
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

# ---------------------------------------------------------------------------
# Fixed parameters. Changing any of them changes the committed data: re-run the
# script, then update docs/data.md and commit data/ together.
# ---------------------------------------------------------------------------
TILE = 256  #: tile side in pixels; small enough for CPU training at batch 4.
TRAIN_STRIDE_SPACENET = 128  #: SpaceNet scenes are tiny: overlap train tiles by half.
TRAIN_STRIDE_NEON = 256  #: the NEON training scene is large enough without overlap.
MIN_EDGE = 32  #: an edge strip narrower than this is not covered by an extra tile.
MIN_VISIBLE = 0.5  #: keep a clipped object if >= this fraction of its area is in the tile.
STRETCH_PCT = (1.0, 99.0)  #: per-scene percentile stretch of raw sensor counts to 8 bit.
JPEG_QUALITY = 90
COORD_DECIMALS = 2  #: rounding of polygon / bbox coordinates in the COCO JSON.

NEON_TRAIN = '2019_YELL_2_528000_4978000_image_crop2'
NEON_VAL = '2019_YELL_2_541000_4977000_image_crop'
NEON_TEST = ('OSBS_029', 'SOAP_061')

#: SpaceNet region splits: the right-most ``val_width`` columns of a scene are
#: validation, everything left of them is training. No tile crosses the boundary.
ATLANTA_VAL_WIDTH = 256
ROADS_VAL_WIDTH = 512

#: Nuclei (stardist's ``img2d.tif``/``mask2d.tif``, 512x512): the right-most
#: ``NUCLEI_VAL_WIDTH`` columns are val (one whole image, 45 nuclei), the rest is train,
#: cut into ``NUCLEI_TILE`` tiles overlapping by half (nuclei are ~25 px across).
NUCLEI_VAL_WIDTH = 224
NUCLEI_TILE = 128
NUCLEI_TRAIN_STRIDE = 64
#: The two files this conversion was written for (stardist 0.9.2); others are refused.
NUCLEI_SHA256 = {
    'img2d.tif': 'f9ccc1571b92c861ff87e28463068b43f61bd47357ed0503f711e5cd1eb97750',
    'mask2d.tif': '59ad5e820b7982ca9d13e946fa6e7f64e2714899e00a2ae6c69aa79aad53d46f',
}

Region = tuple[int, int, int, int]  # x0, y0, x1, y1 (pixels, end exclusive)


# ---------------------------------------------------------------------------
# Generic helpers
# ---------------------------------------------------------------------------
def tile_starts(lo: int, hi: int, tile: int, stride: int,
                min_edge: int = MIN_EDGE) -> list[int]:
    """Tile origins along one axis of ``[lo, hi)``.

    Regular steps of ``stride`` from ``lo``; if the uncovered strip at the end is at
    least ``min_edge`` wide, one more tile is aligned to ``hi`` so the edge is seen.
    """
    if hi - lo < tile:
        raise ValueError(f'region [{lo}, {hi}) is smaller than the tile {tile}')
    starts = list(range(lo, hi - tile + 1, stride))
    if hi - (starts[-1] + tile) >= min_edge:
        starts.append(hi - tile)
    return starts


def tile_grid(region: Region, tile: int, stride: int) -> list[tuple[int, int]]:
    """Row-major list of ``(x, y)`` tile origins inside ``region``."""
    x0, y0, x1, y1 = region
    return [(x, y) for y in tile_starts(y0, y1, tile, stride)
            for x in tile_starts(x0, x1, tile, stride)]


def percentile_stretch(band: np.ndarray,
                       pct: tuple[float, float] = STRETCH_PCT
                       ) -> tuple[np.ndarray, float, float]:
    """Map raw sensor counts to uint8 with one stretch for the whole scene.

    One scene-wide stretch (not per tile) keeps the brightness relations between tiles,
    which is what a local normalisation layer is supposed to cope with by itself.
    """
    lo, hi = (float(v) for v in np.percentile(band, pct))
    scaled = (band.astype(np.float64) - lo) / (hi - lo)
    out = np.floor(np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return out, lo, hi


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """Replicate a single (panchromatic) band to 3 channels for RGB backbones."""
    return np.repeat(gray[..., None], 3, axis=2)


def save_jpeg(rgb: np.ndarray, path: Path) -> None:
    """Write an RGB tile with fixed encoder settings and no metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb, mode='RGB').save(
        path, format='JPEG', quality=JPEG_QUALITY, subsampling=2, optimize=True)


def save_label_png(label: np.ndarray, path: Path) -> None:
    """Write a uint8 label map as a single-channel PNG (lossless)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label.astype(np.uint8), mode='L').save(
        path, format='PNG', compress_level=9)


def write_json(obj: Any, path: Path, indent: int | None = None) -> None:
    """Write JSON deterministically (sorted keys, fixed separators, trailing newline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    seps = (',', ':') if indent is None else (',', ': ')
    path.write_text(json.dumps(obj, sort_keys=True, separators=seps, indent=indent) + '\n')


def reset_dirs(root: Path, names: Iterable[str]) -> None:
    """Remove generated sub-folders so stale tiles never survive a re-run."""
    for name in names:
        target = root / name
        if target.exists():
            shutil.rmtree(target)


def read_geotiff(path: Path) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Read band 1 and the north-up geotransform ``(x0, y0, sx, sy)`` via tifffile tags.

    Uses ModelTiepoint/ModelPixelScale (raster type PixelIsArea), so no GDAL is needed.
    """
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        data = page.asarray()
        scale = page.tags['ModelPixelScaleTag'].value
        tie = page.tags['ModelTiepointTag'].value
    i, j, _, x, y, _ = tie[:6]
    sx, sy = float(scale[0]), float(scale[1])
    return data, (float(x) - i * sx, float(y) + j * sy, sx, sy)


def map_to_pixel(geom: BaseGeometry, gt: tuple[float, float, float, float]) -> BaseGeometry:
    """Map-coordinate geometry -> pixel coordinates (x right, y down, pixel corners)."""
    x0, y0, sx, sy = gt
    return affinity.affine_transform(geom, [1 / sx, 0, 0, -1 / sy, -x0 / sx, y0 / sy])


def rasterize(polys: Sequence[BaseGeometry], height: int, width: int) -> np.ndarray:
    """Boolean mask of pixels whose centre lies inside any polygon (pixel coords)."""
    mask = np.zeros((height, width), dtype=bool)
    for poly in polys:
        minx, miny, maxx, maxy = poly.bounds
        c0, r0 = max(int(np.floor(minx)), 0), max(int(np.floor(miny)), 0)
        c1, r1 = min(int(np.ceil(maxx)), width), min(int(np.ceil(maxy)), height)
        if c1 <= c0 or r1 <= r0:
            continue
        xs, ys = np.meshgrid(np.arange(c0, c1) + 0.5, np.arange(r0, r1) + 0.5)
        mask[r0:r1, c0:c1] |= shapely.contains_xy(poly, xs, ys)
    return mask


def r(v: float) -> float:
    """Round a coordinate for the JSON (keeps files small and byte-stable)."""
    return round(float(v), COORD_DECIMALS)


def clip_box(b: Sequence[float], tile: Region,
             min_visible: float = MIN_VISIBLE) -> list[float] | None:
    """Clip an ``xyxy`` box to a tile; ``None`` if less than ``min_visible`` remains.

    Returns the box in tile coordinates. The area rule drops boxes cut to slivers at
    tile borders (they would teach the detector that half a tree is a whole one).
    """
    x0, y0, x1, y1 = tile
    area = (b[2] - b[0]) * (b[3] - b[1])
    cx0, cy0 = max(b[0], x0), max(b[1], y0)
    cx1, cy1 = min(b[2], x1), min(b[3], y1)
    if cx1 <= cx0 or cy1 <= cy0 or area <= 0:
        return None
    if (cx1 - cx0) * (cy1 - cy0) < min_visible * area:
        return None
    return [cx0 - x0, cy0 - y0, cx1 - x0, cy1 - y0]


def clip_polygon(poly: BaseGeometry, tile: Region,
                 min_visible: float = MIN_VISIBLE) -> list[Polygon] | None:
    """Clip a polygon to a tile (tile coordinates); same visibility rule as boxes."""
    x0, y0, x1, y1 = tile
    inter = poly.intersection(box(x0, y0, x1, y1))
    if inter.is_empty or inter.area < min_visible * poly.area:
        return None
    parts = [g for g in getattr(inter, 'geoms', [inter]) if isinstance(g, Polygon)]
    parts = [affinity.translate(p, -x0, -y0) for p in parts if p.area >= 1.0]
    return parts or None


def polygon_to_coco(parts: Sequence[Polygon]) -> list[list[float]]:
    """COCO polygon list (exterior rings, flattened x,y; closing vertex dropped)."""
    segs = []
    for p in parts:
        coords = list(orient(p, 1.0).exterior.coords)[:-1]
        flat = [r(v) for xy in coords for v in xy]
        if len(flat) >= 6:
            segs.append(flat)
    return segs


def coco_file(images: list[dict], annotations: list[dict], categories: list[dict],
              description: str) -> dict:
    """Assemble a minimal COCO dict (``info``/``licenses`` included for tools that need them)."""
    return {
        'info': {'description': description, 'version': '1.0'},
        'licenses': [],
        'images': images,
        'annotations': annotations,
        'categories': categories,
    }


def sha256(path: Path) -> str:
    """Hex digest of a file (for SHA256SUMS)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------
# NEON trees (detection)
# ---------------------------------------------------------------------------
def parse_voc(path: Path) -> np.ndarray:
    """Boxes from a Pascal-VOC XML as continuous 0-based ``xyxy`` (float64, N x 4).

    VOC stores 1-based inclusive pixel indices, so ``[xmin-1, ymin-1, xmax, ymax]``.
    All classes (Tree; SOAP's Alive/Dead) are treated as one class, "tree".
    """
    root = ET.parse(path).getroot()
    boxes = []
    for obj in root.iter('object'):
        bb = obj.find('bndbox')
        xmin, ymin, xmax, ymax = (float(bb.find(k).text)
                                  for k in ('xmin', 'ymin', 'xmax', 'ymax'))
        boxes.append([xmin - 1, ymin - 1, xmax, ymax])
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _neon_tiles(img: np.ndarray, boxes: np.ndarray, scene_tag: str, split: str,
                grid: list[tuple[int, int]], tile: int, out: Path,
                images: list[dict], anns: list[dict]) -> int:
    """Cut one scene into tiles, append COCO records, return number of dropped boxes."""
    kept_ids: set[int] = set()
    for x, y in grid:
        th, tw = min(tile, img.shape[0] - y), min(tile, img.shape[1] - x)
        name = f'{split}/{scene_tag}_x{x:04d}_y{y:04d}.jpg'
        save_jpeg(np.ascontiguousarray(img[y:y + th, x:x + tw]), out / 'images' / name)
        image_id = len(images) + 1
        images.append({'id': image_id, 'file_name': name, 'width': tw, 'height': th})
        for k, b in enumerate(boxes):
            c = clip_box(b, (x, y, x + tw, y + th))
            if c is None:
                continue
            kept_ids.add(k)
            w, h = c[2] - c[0], c[3] - c[1]
            anns.append({'id': len(anns) + 1, 'image_id': image_id, 'category_id': 1,
                         'bbox': [r(c[0]), r(c[1]), r(w), r(h)], 'area': r(w * h),
                         'iscrowd': 0})
    return int(len(boxes) - len(kept_ids))


def build_neon(src: Path, out: Path, tile: int = TILE) -> dict:
    """NEON trees -> COCO detection: train = one YELL scene, val = the other, test = 2 other
    sites."""
    src = src / 'neon-trees'
    reset_dirs(out, ['images', 'annotations'])
    categories = [{'id': 1, 'name': 'tree', 'supercategory': 'vegetation'}]
    plan = {
        'train': [(NEON_TRAIN, 'yell528', TRAIN_STRIDE_NEON)],
        'val': [(NEON_VAL, 'yell541', tile)],
        'test': [(n, n.lower(), None) for n in NEON_TEST],  # whole 400x400 images
    }
    manifest: dict[str, Any] = {'tile': tile, 'splits': {}}
    for split, scenes in plan.items():
        images: list[dict] = []
        anns: list[dict] = []
        stats = {'source_boxes': 0, 'dropped_boxes': 0, 'scenes': []}
        for stem, tag, stride in scenes:
            img = np.asarray(Image.open(src / f'{stem}.png').convert('RGB'))
            boxes = parse_voc(src / f'{stem}.xml')
            h, w = img.shape[:2]
            if stride is None:
                grid, size = [(0, 0)], max(h, w)
            else:
                grid, size = tile_grid((0, 0, w, h), tile, stride), tile
            stats['dropped_boxes'] += _neon_tiles(img, boxes, tag, split, grid, size, out,
                                                  images, anns)
            stats['source_boxes'] += len(boxes)
            stats['scenes'].append(f'{stem}.png')
        write_json(coco_file(images, anns, categories, f'NEON trees demo ({split})'),
                   out / 'annotations' / f'{split}.json')
        manifest['splits'][split] = {
            'images': len(images),
            'instances': len(anns),
            'images_without_instances': len(images) - len({a['image_id'] for a in anns}),
            **stats,
        }
    return manifest


# ---------------------------------------------------------------------------
# SpaceNet Atlanta buildings (instance segmentation) and semantic masks
# ---------------------------------------------------------------------------
def load_atlanta(src: Path) -> tuple[np.ndarray, list[BaseGeometry], dict]:
    """8-bit RGB Atlanta scene and building polygons in pixel coordinates."""
    d = src / 'spacenet-atlanta-buildings'
    raw, gt = read_geotiff(d / 'sample_geotiff.tif')
    gray, lo, hi = percentile_stretch(raw)
    feats = json.loads((d / 'geotiff_labels.geojson').read_text())['features']
    polys = [map_to_pixel(shape(f['geometry']), gt) for f in feats]
    info = {'stretch': [lo, hi], 'source_polygons': len(polys)}
    return gray_to_rgb(gray), polys, info


def split_regions(width: int, height: int, val_width: int) -> dict[str, Region]:
    """Left part -> train, right ``val_width`` columns -> val (no shared pixels)."""
    return {'train': (0, 0, width - val_width, height),
            'val': (width - val_width, 0, width, height)}


def build_spacenet_buildings(src: Path, out: Path, tile: int = TILE) -> dict:
    """SpaceNet Atlanta buildings -> COCO instance segmentation (polygons), split by region."""
    img, polys, info = load_atlanta(src)
    reset_dirs(out, ['images', 'annotations'])
    h, w = img.shape[:2]
    categories = [{'id': 1, 'name': 'building', 'supercategory': 'structure'}]
    regions = split_regions(w, h, ATLANTA_VAL_WIDTH)
    manifest: dict[str, Any] = {'tile': tile, **info, 'splits': {}}
    for split, region in regions.items():
        stride = TRAIN_STRIDE_SPACENET if split == 'train' else tile
        images: list[dict] = []
        anns: list[dict] = []
        for x, y in tile_grid(region, tile, stride):
            name = f'{split}/atlanta_x{x:04d}_y{y:04d}.jpg'
            save_jpeg(np.ascontiguousarray(img[y:y + tile, x:x + tile]), out / 'images' / name)
            image_id = len(images) + 1
            images.append({'id': image_id, 'file_name': name, 'width': tile, 'height': tile})
            for poly in polys:
                parts = clip_polygon(poly, (x, y, x + tile, y + tile))
                segs = polygon_to_coco(parts) if parts else []
                if not segs:
                    continue
                minx, miny, maxx, maxy = MultiPolygon(parts).bounds
                anns.append({
                    'id': len(anns) + 1, 'image_id': image_id, 'category_id': 1,
                    'segmentation': segs,
                    'bbox': [r(minx), r(miny), r(maxx - minx), r(maxy - miny)],
                    'area': r(sum(p.area for p in parts)), 'iscrowd': 0})
        write_json(coco_file(images, anns, categories, f'SpaceNet Atlanta buildings ({split})'),
                   out / 'annotations' / f'{split}.json')
        manifest['splits'][split] = {
            'region_xyxy': list(region),
            'images': len(images),
            'instances': len(anns),
            'images_without_instances': len(images) - len({a['image_id'] for a in anns}),
        }
    return manifest


def _seg_split(img: np.ndarray, label: np.ndarray, regions: dict[str, Region],
               tag: str, classes: Sequence[str], out: Path, tile: int) -> dict:
    """Cut one scene + label map into mmseg ``img_dir``/``ann_dir`` tiles per split."""
    splits = {}
    for split, region in regions.items():
        stride = TRAIN_STRIDE_SPACENET if split == 'train' else tile
        counts = np.zeros(len(classes), dtype=np.int64)
        grid = tile_grid(region, tile, stride)
        for x, y in grid:
            stem = f'{tag}_x{x:04d}_y{y:04d}'
            lab = np.ascontiguousarray(label[y:y + tile, x:x + tile])
            save_jpeg(np.ascontiguousarray(img[y:y + tile, x:x + tile]),
                      out / 'img_dir' / split / f'{stem}.jpg')
            save_label_png(lab, out / 'ann_dir' / split / f'{stem}.png')
            counts += np.bincount(lab.ravel(), minlength=len(classes))[:len(classes)]
        total = int(counts.sum())
        splits[split] = {
            'region_xyxy': list(region),
            'images': len(grid),
            'pixels': {c: int(n) for c, n in zip(classes, counts)},
            'fraction': {c: round(int(n) / total, 4) for c, n in zip(classes, counts)},
        }
    return splits


def build_spacenet_seg(src: Path, out: Path, tile: int = TILE) -> dict:
    """Two binary mmseg datasets: Atlanta buildings and Las Vegas roads, split by region.

    They stay separate because each scene is labelled for one class only (Atlanta has
    no road labels, the roads scene has no building labels): merging them into one
    3-class set would label real roads/buildings as background.
    """
    manifest: dict[str, Any] = {'tile': tile}
    # Buildings: rasterise the same polygons used for the COCO set.
    img, polys, info = load_atlanta(src)
    bout = out / 'buildings'
    reset_dirs(bout, ['img_dir', 'ann_dir'])
    h, w = img.shape[:2]
    label = rasterize(polys, h, w).astype(np.uint8)
    manifest['buildings'] = {
        'classes': ['background', 'building'], **info,
        'splits': _seg_split(img, label, split_regions(w, h, ATLANTA_VAL_WIDTH), 'atlanta',
                             ('background', 'building'), bout, tile)}
    # Roads: the source raster mask (0/255) becomes 0/1.
    d = src / 'spacenet-roads'
    raw, _ = read_geotiff(d / 'road_mask_input.tif')
    gray, lo, hi = percentile_stretch(raw)
    mask = tifffile.imread(d / 'sample_road_raster_mask.tif')
    if mask.shape != raw.shape:
        raise ValueError('road mask and image differ in shape')
    rout = out / 'roads'
    reset_dirs(rout, ['img_dir', 'ann_dir'])
    h, w = raw.shape
    manifest['roads'] = {
        'classes': ['background', 'road'], 'stretch': [lo, hi],
        'splits': _seg_split(gray_to_rgb(gray), (mask > 0).astype(np.uint8),
                             split_regions(w, h, ROADS_VAL_WIDTH), 'vegas',
                             ('background', 'road'), rout, tile)}
    return manifest


# ---------------------------------------------------------------------------
# Nuclei (instance segmentation), from the stardist wheel
# ---------------------------------------------------------------------------
def read_nuclei_source(src: Path) -> dict[str, bytes]:
    """The bytes of ``img2d.tif`` and ``mask2d.tif`` from the stardist wheel or a folder.

    Checked against :data:`NUCLEI_SHA256`, so the committed data always derive from the same
    two files whatever the wheel's other contents.
    """
    files = {}
    for name, digest in NUCLEI_SHA256.items():
        if src.is_file():
            with zipfile.ZipFile(src) as whl:
                files[name] = whl.read(f'stardist/data/images/{name}')
        else:
            files[name] = (src / name).read_bytes()
        if hashlib.sha256(files[name]).hexdigest() != digest:
            raise ValueError(f'{name} from {src} is not the stardist 0.9.2 file')
    return files


def label_to_coco(labels: np.ndarray, full_area: dict[int, int], image_id: int,
                  first_id: int, min_visible: float = MIN_VISIBLE) -> list[dict]:
    """COCO annotations (compressed RLE) of the labelled instances in a label crop.

    An instance cut by the crop is kept only if ``min_visible`` of its pixels are inside
    (the rule of the other datasets). RLE is exact for pixel labels; boxes are the pixel
    extents (``[x, y, w, h]`` in pixel-corner coordinates), area the pixel count.
    """
    anns = []
    for inst in np.unique(labels[labels > 0]):
        m = labels == inst
        n = int(m.sum())
        if n < min_visible * full_area[int(inst)]:
            continue
        rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
        ys, xs = np.nonzero(m)
        x0, y0 = int(xs.min()), int(ys.min())
        anns.append({'id': first_id + len(anns), 'image_id': image_id, 'category_id': 1,
                     'segmentation': {'size': [int(s) for s in rle['size']],
                                      'counts': rle['counts'].decode('ascii')},
                     'bbox': [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0],
                     'area': n, 'iscrowd': 0})
    return anns


def build_nuclei(nuclei_src: Path, out: Path) -> dict:
    """stardist's 2D nuclei image -> COCO instance segmentation, split by image region.

    Train: ``NUCLEI_TILE`` tiles (stride ``NUCLEI_TRAIN_STRIDE``) of the left part; val: the
    right ``NUCLEI_VAL_WIDTH`` columns as one image, so no val nucleus is cut by a tile.
    The image (uint16, values 0-235) gets the per-scene percentile stretch of SpaceNet and is
    stored as lossless RGB PNG (grey repeated), the labels as RLE.
    """
    files = read_nuclei_source(nuclei_src)
    raw = tifffile.imread(io.BytesIO(files['img2d.tif']))
    labels = tifffile.imread(io.BytesIO(files['mask2d.tif'])).astype(np.int64)
    if raw.shape != labels.shape:
        raise ValueError('nuclei image and mask differ in shape')
    gray, lo, hi = percentile_stretch(raw)
    img = gray_to_rgb(gray)
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    full_area = {int(i): int(n) for i, n in zip(ids, counts)}
    reset_dirs(out, ['images', 'annotations'])
    h, w = labels.shape
    regions = split_regions(w, h, NUCLEI_VAL_WIDTH)
    grids = {'train': [(x, y, NUCLEI_TILE, NUCLEI_TILE) for x, y in
                       tile_grid(regions['train'], NUCLEI_TILE, NUCLEI_TRAIN_STRIDE)],
             'val': [(regions['val'][0], 0, NUCLEI_VAL_WIDTH, h)]}
    categories = [{'id': 1, 'name': 'nucleus', 'supercategory': 'cell'}]
    manifest: dict[str, Any] = {'source_instances': len(full_area), 'stretch': [lo, hi],
                                'source_sha256': dict(NUCLEI_SHA256), 'splits': {}}
    for split, grid in grids.items():
        images: list[dict] = []
        anns: list[dict] = []
        for x, y, tw, th in grid:
            name = f'{split}/nuclei_x{x:04d}_y{y:04d}.png'
            path = out / 'images' / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(img[y:y + th, x:x + tw]), mode='RGB').save(
                path, format='PNG', compress_level=9)
            image_id = len(images) + 1
            images.append({'id': image_id, 'file_name': name, 'width': tw, 'height': th})
            anns += label_to_coco(labels[y:y + th, x:x + tw], full_area, image_id,
                                  len(anns) + 1)
        write_json(coco_file(images, anns, categories, f'DSB2018 nuclei via stardist ({split})'),
                   out / 'annotations' / f'{split}.json')
        manifest['splits'][split] = {
            'region_xyxy': list(regions[split]),
            'tile': [grid[0][2], grid[0][3]],
            'images': len(images),
            'instances': len(anns),
            'images_without_instances': len(images) - len({a['image_id'] for a in anns}),
        }
    return manifest


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------
DATASETS = {
    'neon_trees': build_neon,
    'spacenet_buildings': build_spacenet_buildings,
    'spacenet_seg': build_spacenet_seg,
}


def write_checksums(out: Path, names: Iterable[str]) -> None:
    """SHA256SUMS over all generated files (to verify a regeneration bit for bit)."""
    lines = []
    for name in sorted(names):
        for p in sorted((out / name).rglob('*')):
            if p.is_file() and p.suffix in {'.jpg', '.png', '.json'}:
                lines.append(f'{sha256(p)}  {p.relative_to(out).as_posix()}')
    (out / 'SHA256SUMS').write_text('\n'.join(lines) + '\n')


def build_all(src: Path, out: Path, nuclei_src: Path) -> dict:
    """Build every dataset and write MANIFEST.json + SHA256SUMS.

    All or nothing: MANIFEST.json and SHA256SUMS list every dataset under ``out``, so a
    partial build would leave them out of step with the committed folders.
    """
    datasets = {n: build(src, out / n) for n, build in DATASETS.items()}
    datasets['nuclei'] = build_nuclei(nuclei_src, out / 'nuclei')
    manifest = {
        'generator': 'projects/aerial_demo/tools/build_demo_data.py',
        'params': {'tile': TILE, 'min_visible': MIN_VISIBLE, 'min_edge': MIN_EDGE,
                   'stretch_percentiles': list(STRETCH_PCT), 'jpeg_quality': JPEG_QUALITY},
        'datasets': datasets,
    }
    write_json(manifest, out / 'MANIFEST.json', indent=2)
    write_checksums(out, datasets)
    return manifest


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--src', type=Path, default=Path('../shared/data'),
                   help='folder with the raw samples (see its README.md)')
    p.add_argument('--out', type=Path, default=Path('data'), help='output folder')
    p.add_argument('--nuclei-src', type=Path, default=Path('data/nuclei/source'),
                   help='a folder with stardist 0.9.2\'s img2d.tif and mask2d.tif (default: the '
                        'committed copy) or the wheel itself')
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    manifest = build_all(args.src, args.out, args.nuclei_src)
    print(json.dumps(manifest['datasets'], sort_keys=True, indent=1))


if __name__ == '__main__':
    main()
