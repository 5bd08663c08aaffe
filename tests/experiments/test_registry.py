"""The contract every registered experiment keeps (a new experiment is covered automatically):
its tiny preset runs through the CLI, every claim carries evidence, results.json round-trips,
and every model that trains reaches ``fit`` on the run's device."""

import json

import pytest
import torch

import hyperlab.train
from hyperlab.cli import main
from hyperlab.experiments import discover
from hyperlab.experiments.claims import Claim

NAMES = sorted(discover())


@pytest.mark.parametrize("name", NAMES)
def test_tiny_preset_keeps_the_contract(name, tmp_path, data_root, monkeypatch, capsys):
    devices: list[torch.device] = []
    real_fit = hyperlab.train.fit

    def spy(model, loss, data, config, **kw):
        devices.append(torch.device(kw["device"]))
        out = real_fit(model, loss, data, config, **kw)
        devices.extend(p.device for p in model.parameters())
        return out

    monkeypatch.setattr(hyperlab.train, "fit", spy)
    out = tmp_path / "run"
    argv = ["run", name, "--preset", "tiny", "--out", str(out), "--data-dir", str(data_root),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    record = json.loads((out / "results.json").read_text())
    assert record["experiment"] == name and record["preset"] == "tiny"
    assert record["arxiv"] and record["command"].startswith(f"hyperlab run {name}")
    assert record["machine"]["cpu_count"] >= 1 and "versions" in record
    assert record["config"] == json.loads(json.dumps(record["config"]))
    claims = [Claim.from_dict(c) for c in record["claims"]]
    assert claims, "every experiment checks at least one of the paper's claims"
    for c in claims:
        assert c.claim and c.paper_ref and c.evidence, c
        assert c.held in (True, False, None)
        assert c.claim in printed
    for fig in record["figures"]:
        assert (out / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(d == torch.device("cpu") for d in devices)
    trains = not name.startswith(("infinite-width-kernel", "infinite-width-taylor",
                                  "generating-toy"))  # fmt: skip
    assert bool(devices) == trains, "models that train go through RunContext.fit"
