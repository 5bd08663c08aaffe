"""The continual-learning claims on hand-made metrics: each holds, fails and declines."""

from __future__ import annotations

from hyperlab.experiments.continual.permuted_mnist import PermutedMNISTConfig
from hyperlab.experiments.continual.permuted_mnist import judge as judge_permuted
from hyperlab.experiments.continual.split_mnist import SplitMNISTConfig
from hyperlab.experiments.continual.split_mnist import judge as judge_split


def _metrics(hnet, finetune, ewc, inferred=(0.69, 0.70, 0.695), n_test=2000):
    def learner(final, inf):
        return {"final_mean": list(final), "final_inferred_mean": list(inf),
                "forgetting": [0.0] * len(final)}  # fmt: skip

    return {"learners": {"hnet": learner(hnet, inferred), "finetune": learner(finetune, inferred),
                         "ewc": learner(ewc, inferred)},
            "n_test": [n_test] * 5, "chance": 0.5}  # fmt: skip


def _held(claims):
    return [c.held for c in claims]


def test_split_claims_hold_fail_and_decline():
    cfg = SplitMNISTConfig()
    good = _metrics([0.997, 0.998, 0.996], [0.90, 0.89, 0.91], [0.990, 0.991, 0.989])
    assert _held(judge_split(cfg, good)) == [True, True, True]
    bad = _metrics([0.90, 0.89, 0.91], [0.997, 0.998, 0.996], [0.997, 0.998, 0.996],
                   inferred=(0.50, 0.51, 0.52))  # hypercl#4's 50.99 %  # fmt: skip
    assert _held(judge_split(cfg, bad)) == [False, False, False]
    # within noise: HNET and EWC the same
    tie = _metrics([0.995, 0.996, 0.997], [0.90, 0.90, 0.90], [0.996, 0.995, 0.997])
    claims = judge_split(cfg, tie)
    assert claims[1].held is None and "within" in claims[1].not_judged


def test_the_paper_number_is_judged_only_at_the_papers_task_count():
    m = _metrics([0.997, 0.998, 0.996], [0.90, 0.89, 0.91], [0.990, 0.991, 0.989])
    claims = judge_split(SplitMNISTConfig(n_tasks=3), m)
    assert claims[-1].held is None and "the paper's number is for 5" in claims[-1].not_judged
    # one shared head (CL2): no CL3 number to compare with
    assert len(judge_split(SplitMNISTConfig(heads="single"), m)) == 2


def test_one_seed_is_judged_on_the_test_sets_noise():
    m = _metrics([0.97], [0.80], [0.969], n_test=10_000)
    claims = judge_permuted(PermutedMNISTConfig(), m)
    assert claims[0].held is True  # 17 points on 50,000 test images: beyond the noise
    assert claims[1].held is None  # 0.1 point: within it
