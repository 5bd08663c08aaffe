"""The continual-learning experiments end to end (tiny): a learner added later reuses the
finished ones' checkpoints, and the record holds every task after every task."""

from __future__ import annotations

import hyperlab.continual
from hyperlab.experiments import run_experiment


def test_more_learners_reuse_the_finished_ones(tmp_path, data_root, monkeypatch):
    kw = dict(preset="tiny", out_dir=tmp_path, data_dir=data_root, progress=False)
    first = run_experiment("continual-split-mnist", overrides={"learners": ["hnet"]}, **kw)
    steps = []
    real = hyperlab.continual.Hypernet.step

    def counted(self, t, batch):
        steps.append(t)
        return real(self, t, batch)

    monkeypatch.setattr(hyperlab.continual.Hypernet, "step", counted)
    second = run_experiment("continual-split-mnist", overwrite=True, **kw)
    assert steps == []  # HNET's two seeds resumed from their finished checkpoints
    a, b = first["metrics"]["learners"]["hnet"], second["metrics"]["learners"]["hnet"]
    assert a["accuracy"] == b["accuracy"]
    assert set(second["metrics"]["learners"]) == {"hnet", "finetune", "ewc"}
    acc = b["accuracy"][0]  # seed 0: task j after task i, j <= i
    assert [len(row) for row in acc] == [1, 2]


def test_permuted_tasks_differ_per_task_and_share_labels(tmp_path, data_root):
    rec = run_experiment("continual-permuted-mnist", **{"preset": "tiny", "out_dir": tmp_path,
                         "data_dir": data_root, "progress": False})  # fmt: skip
    m = rec["metrics"]
    assert m["chance"] == 0.1 and m["n_test"] == [100, 100]
    assert m["parameter_counts"]["target"] == 784 * 20 + 20 + 20 * 20 + 20
