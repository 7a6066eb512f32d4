"""The wheel works outside the checkout: mim finds its configs, nothing else ships (issue #13).

The wheel is built from a copy of the files git sees (tracked plus untracked-but-not-ignored),
which is a clean clone in CI and the working tree, uncommitted edits included, locally; building
in the checkout itself would replace an editable install's ``lcn_mm/.mim`` symlinks with copies.
It is installed with ``--no-deps`` into a fresh virtualenv; the OpenMMLab stack becomes visible
through one ``.pth`` line naming this interpreter's site-packages (a path line there does not run
that folder's own ``.pth`` files, so the checkout's editable lcn_mm stays out of ``sys.path``).
Python and mim then run from a neutral directory.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIRS = ('mmdet', 'mmseg')


def _run(cmd: list[str], cwd: Path) -> str:
    """Run ``cmd``; fail the test with its output if it exits non-zero."""
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)
    assert proc.returncode == 0, f'{cmd} exited {proc.returncode}:\n{proc.stdout}'
    return proc.stdout


def _version() -> str:
    namespace: dict = {}
    exec((ROOT / 'lcn_mm' / 'version.py').read_text(), namespace)
    return namespace['__version__']


def _config_ids(folder: str) -> set[str]:
    return {p.stem for p in (ROOT / 'configs' / folder).glob('*.py')}


@pytest.fixture(scope='module')
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files git sees, copied into a temporary folder (a fresh checkout of this tree)."""
    if not (ROOT / '.git').exists() or shutil.which('git') is None:
        pytest.skip('needs a git checkout and git')
    listed = _run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], ROOT)
    dst = tmp_path_factory.mktemp('src')
    for rel in filter(None, listed.split('\0')):
        src = ROOT / rel
        if src.is_file():  # listed but deleted in the working tree: not part of this tree
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    return dst


@pytest.fixture(scope='module')
def wheel(source_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built as README says (`pip wheel --no-build-isolation`)."""
    out = tmp_path_factory.mktemp('dist')
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
          '-w', str(out), str(source_copy)], source_copy)
    (whl,) = out.glob('lcn_mm-*.whl')
    return whl


@pytest.fixture(scope='module')
def venv_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with only the wheel installed, plus the stack via a .pth line."""
    venv = tmp_path_factory.mktemp('venv')
    _run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], venv)
    python = venv / 'bin' / 'python'
    _run([sys.executable, '-m', 'pip', '--python', str(python), 'install', '--no-deps', '-q',
          str(wheel)], venv)
    purelib = 'import sysconfig; print(sysconfig.get_paths()["purelib"])'
    site = Path(_run([str(python), '-c', purelib], venv).strip())
    (site / 'openmmlab_stack.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    return python


def test_metafiles_list_every_config_without_results() -> None:
    """mim search shows what the metafiles say: every config once, and nothing unmeasured."""
    index = yaml.safe_load((ROOT / 'model-index.yml').read_text())
    assert index['Import'] == [f'configs/{d}/metafile.yml' for d in CONFIG_DIRS]
    for folder in CONFIG_DIRS:
        meta = yaml.safe_load((ROOT / 'configs' / folder / 'metafile.yml').read_text())
        collections = {c['Name'] for c in meta['Collections']}
        names = [m['Name'] for m in meta['Models']]
        assert len(names) == len(set(names))
        assert set(names) == _config_ids(folder)
        for model in meta['Models']:
            assert model['Config'] == f"configs/{folder}/{model['Name']}.py"
            assert model['In Collection'] in collections
            # Nothing has been measured on COCO/Cityscapes/ADE20K and no checkpoint exists.
            assert 'Results' not in model and 'Weights' not in model
            norm = model['Metadata']['Normalization']
            assert ('lcn-all' in model['Name']) == (norm == 'LCN')
            assert ('gn-all' in model['Name']) == (norm == 'GN')


def test_citation_version_is_the_package_version() -> None:
    citation = yaml.safe_load((ROOT / 'CITATION.cff').read_text())
    assert citation['version'] == _version()
    assert 'arXiv:1912.05845' in str(citation['preferred-citation'])


def test_sdist_has_no_missing_manifest_files(source_copy: Path, tmp_path: Path) -> None:
    out = _run([sys.executable, 'setup.py', 'sdist', '-d', str(tmp_path)], source_copy)
    assert 'no files found' not in out and 'warning' not in out.lower(), out
    (sdist,) = tmp_path.glob('lcn_mm-*.tar.gz')
    assert sdist.stat().st_size > 0


def test_wheel_contents(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = next(n.split('/')[0] for n in names if n.endswith('.dist-info/METADATA'))
        metadata = zf.read(f'{dist_info}/METADATA').decode()
        top_level = zf.read(f'{dist_info}/top_level.txt').decode().split()
    assert {n.split('/')[0] for n in names} == {'lcn_mm', dist_info}
    assert top_level == ['lcn_mm']  # mim list/search find the package through this line
    assert not [n for n in names if 'aerial_demo' in n or n.endswith('setup_env.sh')]
    assert 'lcn_mm/.mim/model-index.yml' in names
    for folder in CONFIG_DIRS:
        assert f'lcn_mm/.mim/configs/{folder}/metafile.yml' in names
        assert {f'lcn_mm/.mim/configs/{folder}/{c}.py' for c in _config_ids(folder)} <= names
    assert {'lcn_mm/.mim/tools/train.py', 'lcn_mm/.mim/tools/test.py',
            'lcn_mm/ops/csrc/lcn_cpu.cpp'} <= names
    assert {f'{dist_info}/LICENSE', f'{dist_info}/NOTICE'} <= names
    assert 'License: Apache-2.0' in metadata


def test_installed_wheel_works_outside_the_checkout(venv_python: Path, tmp_path: Path) -> None:
    code = (
        'import os, lcn_mm, mmengine\n'
        'from importlib.metadata import distribution\n'
        'from mmengine.registry import MODELS\n'
        'assert MODELS.get("LCN") is lcn_mm.LCN\n'
        'pkg = os.path.dirname(lcn_mm.__file__)\n'
        'print(pkg)\n'
        'print(distribution("lcn_mm").locate_file(""))\n'
        'print(sorted(os.listdir(os.path.join(pkg, ".mim", "configs"))))\n')
    pkg, dist_location, configs = _run([str(venv_python), '-c', code], tmp_path).splitlines()[-3:]
    venv = venv_python.parents[1]
    assert Path(pkg).is_relative_to(venv), pkg  # not the checkout's (editable) lcn_mm
    assert Path(dist_location).is_relative_to(venv), dist_location
    assert configs == str(['_base_', 'mmdet', 'mmseg'])


def test_mim_search_and_list_find_the_installed_wheel(venv_python: Path, tmp_path: Path) -> None:
    pytest.importorskip('mim', reason='openmim: make env installs requirements/openmim.txt')
    out = _run([str(venv_python), '-m', 'mim', 'search', 'lcn_mm'], tmp_path)
    shown = {line.split(':', 1)[1].strip() for line in out.splitlines()
             if line.startswith('config id:')}
    assert shown == _config_ids('mmdet') | _config_ids('mmseg')
    rows = [line.split() for line in
            _run([str(venv_python), '-m', 'mim', 'list'], tmp_path).splitlines()]
    assert ['lcn-mm', _version()] in [row[:2] for row in rows]
    # mim reads lcn_mm/.mim of the installed wheel, not the checkout's.
    out = _run([str(venv_python), '-c', 'from mim.utils import get_installed_path; '
                'print(get_installed_path("lcn_mm"))'], tmp_path)
    assert Path(out.strip().splitlines()[-1]).is_relative_to(venv_python.parents[1])
