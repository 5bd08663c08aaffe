"""Seeds trained side by side (``batch_seeds``) give every seed the metrics it gets one after
another, to float tolerance, on the tiny presets of the sweeps and of Fig. 2."""

from __future__ import annotations

import pytest

from hyperlab.experiments import run_experiment


def _close(a, b, path=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            if "seconds" not in k:
                _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6), path
    else:
        assert a == b, path


@pytest.mark.parametrize("name, extra", [
    ("modularity-rotation", {}),
    ("modularity-synthetic-depth", {"depths": [2, 3]}),
    ("infinite-width-dynamics", {"seeds": 2}),
])  # fmt: skip
def test_side_by_side_equals_one_after_another(name, extra, tmp_path, data_root):
    rec = {b: run_experiment(name, preset="tiny", out_dir=tmp_path / str(b), data_dir=data_root,
                             progress=False, overrides={**extra, "batch_seeds": b})
           for b in (True, False)}  # fmt: skip
    _close(rec[True]["metrics"], rec[False]["metrics"])
    assert [c["held"] for c in rec[True]["claims"]] == [c["held"] for c in rec[False]["claims"]]
