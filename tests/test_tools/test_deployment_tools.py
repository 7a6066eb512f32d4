"""tools/deployment/pytorch2onnx.py end to end (issue #15; the operator itself is tested in
tests/test_ops/test_deploy.py)."""
from __future__ import annotations

import pytest


def test_pytorch2onnx_tool_on_a_demo_detector(tmp_path):
    """The deployment tool end to end: FCOS (mmdet single-stage, whole) with LCN everywhere."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    pytest.importorskip('onnxruntime')
    root = Path(__file__).resolve().parents[2]
    image = root / 'data/neon_trees/images/test/soap_061_x0000_y0000.jpg'
    if not image.exists():
        pytest.skip(f'needs the demo data ({image.relative_to(root)}): '
                    'python projects/aerial_demo/tools/build_demo_data.py')
    record = tmp_path / 'record.json'
    subprocess.run([sys.executable, str(root / 'tools/deployment/pytorch2onnx.py'),
                    str(root / 'projects/aerial_demo/configs/fcos_r18_fpn64_lcn_neon-trees.py'),
                    '--shape', '64', '96', '--out', str(tmp_path / 'fcos.onnx'), '--no-gn',
                    '--reps', '1', '--tolerance', '1e-3', '--json', str(record)],
                   check=True, timeout=900, cwd=root,
                   # the demo configs import aerial_demo (custom_imports)
                   env={**os.environ, 'PYTHONPATH': os.pathsep.join(
                       [str(root), str(root / 'projects/aerial_demo'),
                        os.environ.get('PYTHONPATH', '')])})
    result = json.loads(record.read_text())
    assert result['part'] == 'detector (backbone + neck + head)'
    assert len(result['max_abs_diff']) == 3
    assert max(result['max_abs_diff'].values()) <= 1e-3
    # the record says how it was made (docs/benchmarks/deployment/*.json)
    assert 'pytorch2onnx.py' in result['command'] and '--no-gn' in result['command']
    assert result['formulation'] == 'lcn_mm/ops/onnx.py'
