"""MSST's training features on train.py: the EMA of the weights (Lightning's WeightAveraging)
and the quantile-masked MSE, on the real configs, a tiny BSRNN and the stand-in data."""

from __future__ import annotations

import shutil

import pytest
import torch
from test_train import run_train, small_overrides

from bsrnn.checkpoints import load_model, read_checkpoint
from bsrnn.errors import ConfigError


def _net_state(state: dict) -> dict[str, torch.Tensor]:
    return {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}


@pytest.mark.slow
def test_ema_saves_evaluates_and_resumes_the_average(toy_data, tmp_path):
    from conftest import run_config

    import evaluate as evaluate_script

    base = small_overrides(toy_data, tmp_path) + ["optim.ema_momentum=0.9", "optim.lr=0.01"]
    run_train(base + ["optim.max_epochs=1"])
    folder = tmp_path / "outputs" / "bsrnn-tiny"
    best = read_checkpoint(folder / "vocals.ckpt")
    averaged, raw = _net_state(best["state_dict"]), _net_state(best["current_model_state"])
    assert averaged.keys() == raw.keys()
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged)
    assert int(best["averaging_state"]["n_averaged"]) == 2  # one update per optimizer step
    # what evaluation and separation load is the average
    loaded = load_model(folder / "vocals.ckpt").state_dict()
    assert all(torch.equal(loaded[k], averaged[k]) for k in averaged)

    common = ["dset=musdb18hq", f"dset.data_dir={toy_data}", "src_mod=bsrnn-tiny",
              "src_mod.feature_dim=8", "src_mod.num_repeat=1", "targets=[vocals]",
              "eval.progress=false", "eval.device=cpu", "eval.num_threads=1"]  # fmt: skip
    with_average = evaluate_script.run(run_config(common + [f"out_dir={tmp_path / 'outputs'}"]))
    # the same checkpoint holding the raw weights scores differently
    raw_dir = tmp_path / "raw" / "bsrnn-tiny"
    raw_dir.mkdir(parents=True)
    shutil.copy(folder / "vocals.ckpt", raw_dir / "vocals.ckpt")
    ckpt = torch.load(raw_dir / "vocals.ckpt", weights_only=False)
    ckpt["state_dict"] = ckpt["current_model_state"]
    torch.save(ckpt, raw_dir / "vocals.ckpt")
    with_raw = evaluate_script.run(run_config(common + [f"out_dir={tmp_path / 'raw'}"]))
    assert with_average.aggregate["vocals"] != pytest.approx(with_raw.aggregate["vocals"])

    # ckpt_path=last resumes the raw weights and the average: 4 updates, not 2 from scratch
    run_train(base + ["optim.max_epochs=2", "ckpt_path=last"])
    resumed = read_checkpoint(folder / "vocals-last.ckpt")
    assert (resumed["epoch"], resumed["global_step"]) == (1, 4)
    assert int(resumed["averaging_state"]["n_averaged"]) == 4
    assert any(
        not torch.equal(
            _net_state(resumed["state_dict"])[k], _net_state(resumed["current_model_state"])[k]
        )
        for k in averaged
    )


@pytest.mark.slow
def test_masked_mse_trains_and_validation_logs_metrics(toy_data, tmp_path):
    result = run_train(
        small_overrides(toy_data, tmp_path)
        + ["optim.loss_type=masked_mse", "optim.max_epochs=1", "dset.batch_size=2"]
        + ["eval.metrics=[usdr,si_sdr,fullness]"]  # validation logs MSST's metrics too
    )
    from pathlib import Path

    from test_train import scalars

    assert result["global_step"] == 2
    curve = [v for _, v in scalars(Path(result["log_dir"]))["train/loss"]]
    assert len(curve) == 2 and all(0 < v < float("inf") for v in curve)
    tags = scalars(Path(result["log_dir"]))
    for tag in ("val/si_sdr", "val/si_sdr_vocals", "val/fullness", "val/usdr"):
        assert len(tags[tag]) == 1 and abs(tags[tag][0][1]) < float("inf"), tag
    assert "val/bleedless" not in tags


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("dset.batch_size=1", r"optim\.loss_type=masked_mse with dset\.batch_size=1"),
        ("optim.loss_q=1.5", r"optim\.loss_q=1\.5"),
        ("optim.loss_domain=tf", r"optim\.loss_domain='tf' with optim\.loss_type=masked_mse"),
    ],
)
def test_masked_mse_options_are_checked(override, message, toy_data, tmp_path):
    from conftest import run_config

    from bsrnn.cli import settings_from_config

    cfg = run_config(small_overrides(toy_data, tmp_path) + ["optim.loss_type=masked_mse", override])
    with pytest.raises(ConfigError, match=message):
        settings_from_config(cfg)


@pytest.mark.parametrize("value", ["1.0", "0", "-0.5", "true"])
def test_ema_momentum_is_checked(value, toy_data, tmp_path):
    from conftest import run_config

    from bsrnn.cli import settings_from_config

    cfg = run_config(small_overrides(toy_data, tmp_path) + [f"optim.ema_momentum={value}"])
    with pytest.raises(ConfigError, match="optim.ema_momentum"):
        settings_from_config(cfg)
