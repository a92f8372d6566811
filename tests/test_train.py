"""train.py end to end on the real configs (conf/), a tiny real BSRNN and the stand-in data.

In-process runs call ``train.train(cfg)`` with a composed config; the command-line behaviour
(multirun, DDP on two CPU processes, error messages) runs ``python train.py`` itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bsrnn.callbacks import WeightsSyncCheck
from bsrnn.checkpoints import load_model, read_checkpoint
from bsrnn.errors import ConfigError, DatasetError, NonFiniteLossError
from bsrnn.models import count_parameters

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from conftest import run_config  # noqa: E402

import train as train_script  # noqa: E402

PYTHON = sys.executable


def small_overrides(toy: Path, tmp: Path) -> list[str]:
    """Real configs, tiny network, 2 steps of 2 x 1 s per epoch, 1 validation song."""
    return [
        "dset=toy",
        f"dset.data_dir={toy}",
        f"out_dir={tmp / 'outputs'}",
        f"tb_dir={tmp / 'tb'}",
        "src_mod=bsrnn-tiny",
        "src_mod.feature_dim=8",
        "src_mod.num_repeat=1",
        "optim.max_epochs=2",
        "dset.validation_tracks=1",
        "dset.samples_per_track=2",
        "dset.seq_duration=1.0",
        "dset.eval_seq_duration=1.5",
        "dset.num_workers=0",
        "trainer.accelerator=cpu",
        "trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ]


def run_train(overrides: list[str]) -> dict:
    return train_script.train(run_config(overrides))


def scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def run_cli(args: list[str], cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore", HYDRA_FULL_ERROR="0", OMP_NUM_THREADS="1")
    return subprocess.run(
        [PYTHON, str(REPO / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --------------------------------------------------------------------------------------------
# One run: checkpoints at the seed's path, TensorBoard scalars/media/hparams, run record
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_runs(toy_data, tmp_path_factory):
    """Two variants (loss domain t, 2 epochs; tf monitored by SDR, 1 epoch) in one tb_dir."""
    tmp = tmp_path_factory.mktemp("runs")
    base = small_overrides(toy_data, tmp)
    first = run_train(base + ["optim.loss_domain=t"])
    second = run_train(
        base
        + ["optim.loss_domain=tf", "optim.monitor_val=sdr", "optim.max_epochs=1"]
        + [f"out_dir={tmp / 'outputs2'}"]
    )
    return tmp, first, second


def test_run_writes_checkpoints_tensorboard_and_record(two_runs):
    tmp, result, _ = two_runs
    best = tmp / "outputs" / "bsrnn-tiny" / "vocals.ckpt"
    last = tmp / "outputs" / "bsrnn-tiny" / "vocals-last.ckpt"
    assert result["best_path"] == best and best.is_file() and last.is_file()

    # the checkpoint rebuilds the network without any config
    ckpt = read_checkpoint(last)
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 4
    record = ckpt["model"]
    assert (record["format"], record["arch"]) == ("bsrnn/2", "bsrnn")
    assert record["config"]["feature_dim"] == 8 and record["config"]["targets"] == ["vocals"]
    net = load_model(best)
    assert net.config.to_dict() == record["config"]
    assert any(cb.startswith("ModelCheckpoint") for cb in ckpt["callbacks"])
    assert any(cb.startswith("EarlyStopping") for cb in ckpt["callbacks"])
    assert ckpt["lr_schedulers"][0]["step_size"] == 2  # scheduler=step (StepLR 2, 0.98)

    log_dir = Path(result["log_dir"])
    assert log_dir == tmp / "tb" / "bsrnn-tiny-vocals" / "version_0"
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "audio": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in ("train/loss", "train/loss_epoch", "val/loss", "val/usdr", "val/usdr_vocals", "lr"):
        assert tag in tags["scalars"], tag
    assert len(acc.Scalars("val/usdr")) == 2 and len(acc.Scalars("train/loss")) == 4
    assert acc.Scalars("lr")[0].value == pytest.approx(5e-4)
    assert sorted(tags["audio"]) == [
        "val_media/estimate",
        "val_media/mixture",
        "val_media/reference",
    ]
    audio = acc.Audio("val_media/reference")
    assert len(audio) == 2 and audio[0].sample_rate == 44100
    (image_tag,) = tags["images"]
    assert len(acc.Images(image_tag)) == 2 and acc.Images(image_tag)[0].height == 1028

    # the run's record: overrides, resolved config, hyperparameters with the network size
    overrides = (log_dir / "overrides.yaml").read_text()
    assert "optim.loss_domain=t" in overrides and "src_mod.feature_dim=8" in overrides
    assert "loss_domain: t\n" in (log_dir / "config.yaml").read_text()
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["optim.loss_domain"].string_value == "t"
    assert hparams["choice/src_mod"].string_value == "bsrnn-tiny"
    assert int(hparams["n_params"].number_value) == count_parameters(net)


def test_display_tbresults_tabulates_two_runs(two_runs, tmp_path):
    tmp, _, second = two_runs
    import display_tbresults

    runs = display_tbresults.collect_runs(tmp / "tb")
    assert [r.run for r in runs] == ["bsrnn-tiny-vocals/version_0", "bsrnn-tiny-vocals/version_1"]
    header, rows = display_tbresults.variant_table(runs)
    # only what differs between the runs (not paths): loss domain, monitored quantity, epochs
    assert "optim.loss_domain" in header and "optim.monitor_val" in header
    assert "out_dir" not in header and "src_mod.feature_dim" not in header
    by_run = {row[0]: dict(zip(header, row)) for row in rows}
    first_row = by_run["bsrnn-tiny-vocals/version_0"]
    second_row = by_run["bsrnn-tiny-vocals/version_1"]
    assert (first_row["optim.loss_domain"], second_row["optim.loss_domain"]) == ("t", "tf")
    # run 1 picks the epoch of its lowest val/loss; run 2 (monitor sdr) its best val/usdr
    val = scalars(tmp / "tb" / "bsrnn-tiny-vocals" / "version_0")
    losses = [v for _, v in val["val/loss"]]
    assert first_row["epoch"] == losses.index(min(losses))
    assert first_row["val_loss"] == pytest.approx(min(losses), rel=1e-6)
    assert second_row["monitor"] == "sdr" and second_row["epoch"] == 0
    assert second_row["val_usdr"] == pytest.approx(second["metrics"]["val/usdr"], abs=1e-4)

    # the script: prints the table and writes the CSV (atomically, no temp file left)
    csv_path = tmp_path / "val.csv"
    proc = subprocess.run(
        [
            PYTHON,
            str(REPO / "display_tbresults.py"),
            f"tb_dir={tmp / 'tb'}",
            f"+csv_path={csv_path}",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "optim.loss_domain" in proc.stdout and "version_1" in proc.stdout
    lines = csv_path.read_text().splitlines()
    assert lines[0].split(",") == header and len(lines) == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --------------------------------------------------------------------------------------------
# Resume, fast_tr, non-finite loss
# --------------------------------------------------------------------------------------------
def test_interrupted_run_resumes_from_last_checkpoint(toy_data, tmp_path):
    base = small_overrides(toy_data, tmp_path)
    run_train(base + ["optim.max_epochs=1"])  # "killed" after epoch 1
    last = tmp_path / "outputs" / "bsrnn-tiny" / "vocals-last.ckpt"
    first = read_checkpoint(last)
    assert (first["epoch"], first["global_step"]) == (0, 2)
    assert int(first["optimizer_states"][0]["state"][0]["step"]) == 2

    result = run_train(base + ["optim.max_epochs=2", "ckpt_path=last"])
    resumed = read_checkpoint(last)
    assert (resumed["epoch"], resumed["global_step"]) == (1, 4)
    # Adam's step count continues from the saved state (a fresh optimizer would say 2)
    assert int(resumed["optimizer_states"][0]["state"][0]["step"]) == 4
    # the resumed session ran epoch 2 only, logging into the same TensorBoard run
    log_dir = tmp_path / "tb" / "bsrnn-tiny-vocals" / "version_0"
    assert Path(result["log_dir"]) == log_dir
    files = sorted(log_dir.glob("events.out.tfevents.*"), key=os.path.getmtime)
    assert len(files) == 2
    assert [v for _, v in scalars(files[0])["epoch"]][-1] == 0
    assert {v for _, v in scalars(files[1])["epoch"]} == {1}
    assert len(scalars(files[1])["val/loss"]) == 1
    assert (log_dir / "config-resume1.yaml").is_file()
    assert "ckpt_path=last" in (log_dir / "overrides-resume1.yaml").read_text()


def test_fast_tr_overfits_one_batch(toy_data, tmp_path):
    result = run_train(
        small_overrides(toy_data, tmp_path)
        + ["fast_tr=true", "optim.max_epochs=12", "optim.lr=0.005", "optim.loss_domain=t"]
    )
    assert result["best_path"] == tmp_path / "outputs" / "bsrnn-tiny" / "fast_tr" / "vocals.ckpt"
    assert result["global_step"] == 12  # one batch per epoch
    curve = [v for _, v in scalars(Path(result["log_dir"]))["train/loss"]]
    assert len(curve) == 12
    assert curve[-1] < 0.6 * curve[0], curve


def test_non_finite_loss_stops_naming_the_step(toy_data, tmp_path):
    # lr = 1e30 (Adam steps by about lr) overflows the network at the first update: step 2's
    # loss is not finite (an lr of inf is refused before the run starts)
    with pytest.raises(NonFiniteLossError, match=r"epoch 0, global step 1"):
        run_train(small_overrides(toy_data, tmp_path) + ["optim.lr=1e30", "optim.max_epochs=1"])


# --------------------------------------------------------------------------------------------
# Invalid options fail at start, listing the valid choices
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("src_mod.target=piano", r"unknown target 'piano': expected one of vocals, bass, drums"),
        ("src_mod.stereo=wide", r"src_mod\.stereo='wide'.*naive, tac"),
        ("src_mod.n_heads=3", r"src_mod\.feature_dim=8 is not divisible by src_mod\.n_heads=3"),
        ("src_mod.time_layer=transformer", r"src_mod\.time_layer='transformer'.*lstm, gru, conv"),
        ("src_mod.band_layer=mamba", r"src_mod\.band_layer='mamba'.*lstm, gru, conv"),
        ("optim.loss_domain=freq", r"optim\.loss_domain='freq'.*t, tf, t\+tf"),
        ("optim.lr=abc", r"^invalid optim\.lr='abc': expected a number >= 0$"),
        ("optim.lr=-1", r"^invalid optim\.lr=-1: expected a number >= 0$"),
        ("optim.patience=-3", r"^invalid optim\.patience=-3: expected an integer >= 1 or null$"),
        ("optim.optimizer._target_=nope", r"^invalid optim\.optimizer\._target_='nope'"),
        ("scheduler.gamma=abc", r"^invalid scheduler\.gamma='abc': expected a number$"),
        ("scheduler.interval=batch", r"^invalid scheduler\.interval='batch'"),
        ("optim.loss_type=L3", r"optim\.loss_type='L3'.*L1, MSE"),
        ("optim.monitor_val=acc", r"optim\.monitor_val='acc'.*loss, sdr"),
        ("ckpt_path=nowhere/vocals.ckpt", r"nowhere/vocals\.ckpt"),
        ("dset.augmentations=[wobble]", r"wobble"),
    ],
)
def test_invalid_option_fails_at_start(override, message, tmp_path, toy_data):
    with pytest.raises(ConfigError, match=message):
        run_train(small_overrides(toy_data, tmp_path) + [override])
    assert not (tmp_path / "outputs").exists()  # nothing trained or written


def test_unknown_scheduler_lists_the_choices(tmp_path, toy_data):
    with pytest.raises(Exception, match=r"(?s)scheduler/cosine.*plateau.*step"):
        run_config(small_overrides(toy_data, tmp_path) + ["scheduler=cosine"])


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("optim.lr=abc", "invalid optim.lr='abc': expected a number >= 0"),
        ("optim.lr=-1", "invalid optim.lr=-1: expected a number >= 0"),
        ("optim.patience=-3", "invalid optim.patience=-3: expected an integer >= 1 or null"),
        ("optim.optimizer._target_=nope", "invalid optim.optimizer._target_='nope': cannot "
         "import it (expected a class such as torch.optim.Adam)"),
        ("scheduler.gamma=abc", "invalid scheduler.gamma='abc': expected a number"),
    ],
)  # fmt: skip
def test_cli_error_is_one_clear_line(override, line, tmp_path):
    proc = run_cli([override, "dset=toy", f"out_dir={tmp_path / 'outputs'}",
                    f"hydra.run.dir={tmp_path / 'hydra'}"], cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"train.py: error: {line}"]
    assert not (tmp_path / "outputs").exists()


# --------------------------------------------------------------------------------------------
# Command line: multirun over targets, DDP on two CPU processes
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_multirun_over_two_targets_writes_both_checkpoints(toy_data, tmp_path):
    args = small_overrides(toy_data, tmp_path) + [
        "optim.max_epochs=1",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    ]
    proc = run_cli(["-m", "src_mod.target=vocals,bass", *args])
    assert proc.returncode == 0, proc.stderr[-3000:]
    for target in ("vocals", "bass"):
        ckpt = read_checkpoint(tmp_path / "outputs" / "bsrnn-tiny" / f"{target}.ckpt")
        assert ckpt["model"]["config"]["targets"] == [target]
        assert (tmp_path / "tb" / f"bsrnn-tiny-{target}" / "version_0").is_dir()
    assert sorted(p.name for p in (tmp_path / "multirun").iterdir() if p.is_dir()) == ["0", "1"]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_keeps_replicas_identical(toy_data, tmp_path):
    args = small_overrides(toy_data, tmp_path) + [
        "trainer=ddp_cpu",
        "trainer.accelerator=cpu",
        "optim.max_epochs=1",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    proc = run_cli(args)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    digests = dict(re.findall(r"rank (\d)/2: network weights digest ([0-9a-f]{40})", output))
    assert set(digests) == {"0", "1"}, output[-3000:]
    assert digests["0"] == digests["1"]
    assert "weights identical on all 2 processes" in output
    ckpt = read_checkpoint(tmp_path / "outputs" / "bsrnn-tiny" / "vocals-last.ckpt")
    # 2 processes x 2 examples per step: the epoch's 4 examples take 1 step per process
    assert ckpt["global_step"] == 1
    net = load_model(tmp_path / "outputs" / "bsrnn-tiny" / "vocals-last.ckpt")
    assert WeightsSyncCheck.digest(net) == digests["0"]
    assert torch.isfinite(torch.cat([p.flatten() for p in net.parameters()])).all()


# --------------------------------------------------------------------------------------------
# The model family: every preset trains; SIMO end to end (train, evaluate, inference)
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    "preset", ["bsrnn", "bsrnn-large", "bsrnn-opt", "bsrnn-opt-notac", "simo-bsrnn-opt"]
)
def test_every_preset_composes_and_trains_a_step(preset, toy_data, tmp_path):
    result = run_train(
        small_overrides(toy_data, tmp_path)
        + [f"src_mod={preset}", "src_mod.feature_dim=8", "src_mod.num_repeat=1",
           "optim.max_epochs=1", "trainer.limit_train_batches=1", "dset.eval_seq_duration=0.5"]
    )  # fmt: skip
    assert result["global_step"] == 1 and result["best_path"].is_file()
    assert torch.isfinite(torch.tensor(result["metrics"]["val/loss"]))


@pytest.mark.slow
def test_simo_trains_one_checkpoint_and_separates_four_stems(toy_data, tmp_path):
    base = [o for o in small_overrides(toy_data, tmp_path) if not o.startswith("src_mod")]
    result = run_train(base + ["src_mod=simo-bsrnn-tiny", "optim.max_epochs=1"])
    folder = tmp_path / "outputs" / "simo-bsrnn-tiny"
    assert result["best_path"] == folder / "separator.ckpt"
    assert sorted(p.name for p in folder.glob("*.ckpt")) == [
        "separator-last.ckpt",
        "separator.ckpt",
    ]
    model = load_model(folder / "separator.ckpt")
    assert model.targets == ["vocals", "bass", "drums", "other"]
    tags = scalars(Path(result["log_dir"]))
    assert Path(result["log_dir"]).parent.name == "simo-bsrnn-tiny-separator"
    for target in model.targets:
        assert f"val/usdr_{target}" in tags
    usdr_mean = sum(tags[f"val/usdr_{t}"][-1][1] for t in model.targets) / 4
    assert tags["val/usdr"][-1][1] == pytest.approx(usdr_mean, abs=1e-4)

    common = ["dset=musdb18hq", f"dset.data_dir={toy_data}", f"out_dir={tmp_path / 'outputs'}",
              "src_mod=simo-bsrnn-tiny", "eval.progress=false", "eval.device=cpu",
              "eval.num_threads=1"]  # fmt: skip
    import evaluate as evaluate_script
    import inference as inference_script

    result = evaluate_script.run(run_config(common))
    assert result.targets == ["vocals", "bass", "drums", "other"]
    assert all(torch.isfinite(torch.tensor(v)) for v in result.aggregate.values())
    mixture = next((toy_data / "test").iterdir()) / "mixture.wav"
    rec = tmp_path / "stems"
    written = inference_script.run(
        run_config(common + [f"+file_path={mixture}", f"+rec_dir={rec}"])
    )
    assert sorted(written) == ["bass", "drums", "other", "vocals"]
    assert all((rec / f"{t}.wav").is_file() for t in written)


# --------------------------------------------------------------------------------------------
# The reference's training features: resume from its checkpoints, lr rule, AdamW, bf16
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_resume_from_a_reference_checkpoint_starts_from_its_weights(toy_data, tmp_path):
    ref = REPO.parent / "shared" / "fixtures" / "reference-newest" / "vocals-opt.ckpt"
    result = run_train(
        small_overrides(toy_data, tmp_path)
        + ["src_mod=bsrnn-opt", "src_mod.num_repeat=2", f"ckpt_path={ref}", "optim.lr=0",
           "optim.max_epochs=1", "trainer.limit_train_batches=1", "dset.eval_seq_duration=0.5"]
    )  # fmt: skip
    trained, published = load_model(result["last_path"]), load_model(ref)
    for key, value in published.state_dict().items():  # lr 0: the weights stayed the reference's
        assert torch.equal(trained.state_dict()[key], value), key
    with pytest.raises(ConfigError, match="src_mod describes|holds another network"):
        run_train(small_overrides(toy_data, tmp_path) + [f"ckpt_path={ref}"])


@pytest.mark.slow
def test_resume_from_the_seed_version_reference_ignores_inert_options(toy_data, tmp_path):
    """The published seed-version file has attn_enc_dim 20 (its default) against our 16: an
    option that builds nothing without attention heads, so it does not block the resume."""
    ref = REPO.parent / "shared" / "fixtures" / "reference-ckpt" / "vocals-lstm-lstm.ckpt"
    base = small_overrides(toy_data, tmp_path) + [f"ckpt_path={ref}", "src_mod=bsrnn"]
    result = run_train(
        base + ["src_mod.feature_dim=8", "src_mod.num_repeat=2", "optim.lr=0",
                "optim.max_epochs=1", "trainer.limit_train_batches=1",
                "dset.eval_seq_duration=0.5"]
    )  # fmt: skip
    trained, published = load_model(result["last_path"]), load_model(ref)
    for key, value in published.state_dict().items():
        assert torch.equal(trained.state_dict()[key], value), key
    with pytest.raises(ConfigError) as err:
        run_train(base + ["src_mod.feature_dim=16", "src_mod.num_repeat=2"])
    message = str(err.value)
    assert "\n" not in message and "feature_dim: checkpoint 8, src_mod 16" in message
    assert "src_mod.feature_dim=8" in message and "attn_enc_dim" not in message


def test_lr_scaling_is_opt_in_and_never_zero_on_a_cpu(toy_data, tmp_path):
    result = run_train(
        small_overrides(toy_data, tmp_path)
        + ["optim.scale_lr=true", "optim.max_epochs=1", "trainer.limit_train_batches=1",
           "trainer.limit_val_batches=1", "dset.eval_seq_duration=0.5"]
    )  # fmt: skip
    assert result["lr"] == pytest.approx(5e-4 * 2 * 1 * 1 / 16)  # batch 2, one CPU device
    assert train_script.scaled_lr(5e-4, 2, 4, 1) == pytest.approx(2.5e-4)  # the reference's 4 GPUs


@pytest.mark.slow
def test_adamw_deterministic_runs_repeat_exactly(toy_data, tmp_path):
    states = []
    for run in ("a", "b"):
        result = run_train(
            small_overrides(toy_data, tmp_path / run)
            + ["optim=adamw", "trainer.deterministic=true", "optim.max_epochs=1",
               "dset.eval_seq_duration=0.5"]
        )  # fmt: skip
        ckpt = read_checkpoint(result["last_path"])
        assert ckpt["optimizer_states"][0]["param_groups"][0]["weight_decay"] == 0.01
        states.append(ckpt["state_dict"])
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key


@pytest.mark.slow
def test_bf16_mixed_training_on_a_cpu(toy_data, tmp_path):
    from bsrnn.runtime import cpu_bf16_support

    result = run_train(
        small_overrides(toy_data, tmp_path)
        + ["trainer.precision=bf16-mixed", "optim.max_epochs=1", "dset.eval_seq_duration=0.5"]
    )
    assert result["global_step"] == 2 and torch.isfinite(
        torch.tensor(result["metrics"]["val/loss"])
    )
    assert result["precision"] == ("bf16-mixed" if cpu_bf16_support()[0] else "32-true")


def test_default_dataset_needs_the_activity_index_and_says_how(toy_data, tmp_path):
    overrides = [o for o in small_overrides(toy_data, tmp_path) if not o.startswith("dset")]
    with pytest.raises(DatasetError, match=r"python prep_dataset\.py"):
        run_train(
            overrides
            + [f"dset.data_dir={toy_data}", "dset.num_workers=0", "dset.validation_tracks=1"]
        )
