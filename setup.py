#!/usr/bin/env python
"""Packaging for lcn_mm, in the OpenMMLab (MMDetection) style.

* Requirements are parsed from ``requirements/*.txt``; the OpenMMLab stack (mmcv, mmengine,
  mmdet, mmseg) is only in the ``mim`` extra (``requirements/mminstall.txt``).
* No ``torch`` import at build time: lcn_mm is pure Python.
* ``configs/``, ``tools/`` and ``model-index.yml`` are made reachable from the installed package
  as ``lcn_mm/.mim/*`` (symlinks for ``pip install -e .``, copies for ``pip install .`` / sdist /
  wheel), which is where ``mim`` (train/test/run/search/list) looks for them.
* Only the ``lcn_mm`` package ships: ``projects/aerial_demo`` runs from a checkout, and
  ``tools/setup_env.sh`` (the checkout's ``make env``) is not copied into ``.mim/tools``.
"""
import os
import os.path as osp
import platform
import re
import shutil
import sys
import warnings
from typing import Iterator, List, Tuple

from setuptools import find_packages, setup

REPO_ROOT = osp.dirname(osp.abspath(__file__))
PACKAGE = 'lcn_mm'
MIM_FILES = ('tools', 'configs', 'model-index.yml')
# Not copied into lcn_mm/.mim (so not in sdists or wheels): byte code, and setup_env.sh, which
# builds the checkout's .venv and means nothing inside an installed package.
MIM_COPY_IGNORE = ('__pycache__', '*.pyc', 'setup_env.sh')


def readme() -> str:
    """Return the README text for ``long_description``."""
    with open(osp.join(REPO_ROOT, 'README.md'), encoding='utf-8') as f:
        return f.read()


def get_version() -> str:
    """Read ``__version__`` from ``lcn_mm/version.py`` without importing the package."""
    namespace: dict = {}
    with open(osp.join(REPO_ROOT, PACKAGE, 'version.py'), encoding='utf-8') as f:
        exec(compile(f.read(), 'version.py', 'exec'), namespace)
    return namespace['__version__']


def parse_requirements(fname: str = 'requirements.txt', with_version: bool = True) -> List[str]:
    """Parse a requirements file (following ``-r`` includes) into a list of specifiers.

    Args:
        fname: path of the requirements file, relative to the repository root.
        with_version: keep version specifiers (``mmcv==2.1.0``) if True, else names only.
    """

    def parse_line(line: str, base: str) -> Iterator[dict]:
        if line.startswith('-r '):
            target = line.split(' ', 1)[1].strip()
            yield from parse_file(osp.join(base, target))
            return
        info = {'line': line}
        if line.startswith('-e '):
            info['package'] = line.split('#egg=')[1]
            yield info
            return
        pat = '(' + '|'.join(['>=', '==', '>', '<=', '<', '~=', '!=']) + ')'
        parts = re.split(pat, line, maxsplit=1)
        parts = [p.strip() for p in parts]
        info['package'] = parts[0]
        if len(parts) > 1:
            op, rest = parts[1:]
            if ';' in rest:
                version, platform_deps = map(str.strip, rest.split(';'))
                info['platform_deps'] = platform_deps
            else:
                version = rest
            info['version'] = (op, version)
        yield info

    def parse_file(fpath: str) -> Iterator[dict]:
        fpath = osp.join(REPO_ROOT, fpath)  # no-op for absolute paths
        with open(fpath, encoding='utf-8') as f:
            for line in f.readlines():
                line = line.strip() if line.startswith('-e ') else line.split('#', 1)[0].strip()
                if line:
                    yield from parse_line(line, osp.dirname(fpath))

    packages = []
    for info in parse_file(fname):
        parts = [info['package']]
        if with_version and 'version' in info:
            parts.extend(info['version'])
        if not sys.version.startswith('3.4'):
            platform_deps = info.get('platform_deps')
            if platform_deps is not None:
                parts.append(';' + platform_deps)
        packages.append(''.join(parts))
    return packages


def _mim_mode() -> str:
    """Return ``'symlink'``, ``'copy'`` or ``''`` depending on the setup.py command."""
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        # `pip install -e .`: legacy `setup.py develop` or PEP 660 `editable_wheel`.
        return 'copy' if platform.system() == 'Windows' else 'symlink'
    if 'sdist' in sys.argv or 'bdist_wheel' in sys.argv:
        # `pip install .` (builds a wheel) or `python setup.py sdist`.
        return 'copy'
    return ''


def add_mim_extension() -> List[Tuple[str, str]]:
    """Expose ``tools/``, ``configs/``, ... as ``lcn_mm/.mim/*`` (as mmdet's setup.py does).

    Returns:
        The ``(source, target)`` pairs that were linked or copied.
    """
    mode = _mim_mode()
    if not mode:
        return []
    mim_path = osp.join(REPO_ROOT, PACKAGE, '.mim')
    os.makedirs(mim_path, exist_ok=True)
    done = []
    for filename in MIM_FILES:
        src_path = osp.join(REPO_ROOT, filename)
        if not osp.exists(src_path):
            continue
        tar_path = osp.join(mim_path, filename)
        if osp.isfile(tar_path) or osp.islink(tar_path):
            os.remove(tar_path)
        elif osp.isdir(tar_path):
            shutil.rmtree(tar_path)
        if mode == 'symlink':
            os.symlink(osp.relpath(src_path, osp.dirname(tar_path)), tar_path)
        elif osp.isfile(src_path):
            shutil.copyfile(src_path, tar_path)
        elif osp.isdir(src_path):
            shutil.copytree(src_path, tar_path, ignore=shutil.ignore_patterns(*MIM_COPY_IGNORE))
        else:
            warnings.warn(f'Cannot copy file {src_path}.')
            continue
        done.append((src_path, tar_path))
    return done


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='lcn_mm',
        version=get_version(),
        description='Local Context Normalization (LCN) as an OpenMMLab norm layer',
        long_description=readme(),
        long_description_content_type='text/markdown',
        keywords='computer vision, normalization, object detection, semantic segmentation',
        # `url` (Home-page) stays unset until the repository has a public address.
        project_urls={
            'Paper': 'https://arxiv.org/abs/1912.05845',
        },
        license='Apache-2.0',
        # LICENSE (Apache-2.0 text) and NOTICE (what it covers; data/ keeps its own licences)
        # go into the wheel's .dist-info.
        license_files=('LICENSE', 'NOTICE'),
        packages=find_packages(include=('lcn_mm', 'lcn_mm.*')),
        include_package_data=True,
        python_requires='>=3.8',
        classifiers=[
            'Development Status :: 3 - Alpha',
            'License :: OSI Approved :: Apache Software License',
            'Operating System :: OS Independent',
            'Programming Language :: Python :: 3',
            'Programming Language :: Python :: 3.11',
        ],
        install_requires=parse_requirements('requirements/runtime.txt'),
        extras_require={
            'all': parse_requirements('requirements.txt'),
            'tests': parse_requirements('requirements/tests.txt'),
            'build': parse_requirements('requirements/build.txt'),
            'optional': parse_requirements('requirements/optional.txt'),
            'mim': parse_requirements('requirements/mminstall.txt'),
        },
        zip_safe=False)
