"""DataSettings: one default per key, checks naming dset.<key>, the configs that feed it."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bsrnn.data import (
    DEFAULT_DATASET,
    ActivityParams,
    AugmentationParams,
    DataSettings,
    ToyParams,
)
from bsrnn.errors import BsrnnError, ConfigError

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def test_defaults_and_derived_values() -> None:
    s = DataSettings()
    assert s.data_dir == Path("data/musdb18hq") and s.sad_path == Path("data/musdb18hq/sad")
    assert s.sources == ("vocals", "bass", "drums", "other") and s.mixture == "stems"
    assert s.seq_len == 3 * 44100 and s.eval_seq_len is None
    assert s.activity == ActivityParams() and s.toy is None
    assert s.augmentation_params == AugmentationParams()  # the augmentation defaults, once
    assert s.augmenter().names == ("randomcrop", "rescale", "channelswap")
    assert DataSettings(sad_dir="x", eval_seq_duration=1.5).sad_path == Path("x")
    assert DataSettings(eval_seq_duration=1.5).eval_seq_len == 66150


def test_from_mapping_converts_and_normalises() -> None:
    s = DataSettings.from_mapping(
        {
            "data_dir": "d/",
            "sources": ["bass", "vocals"],
            "augmentations": ["rescale_db", "silenttarget"],
            "validation_tracks": ["x", "y"],
            "seq_duration": 2,
            "activity": {"win_duration": 4.0},
            "toy": {"n_train": 3},
        }
    )
    assert s.data_dir == Path("d") and s.sources == ("bass", "vocals")
    assert s.augmentations == ("rescale_db", "silenttarget")
    assert s.validation_tracks == ("x", "y") and s.seq_duration == 2.0
    assert s.activity == ActivityParams(win_duration=4.0) and s.toy == ToyParams(n_train=3)
    hash(s)  # frozen, all fields hashable


@pytest.mark.parametrize(
    ("mapping", "pattern"),
    [
        ({"_target_": "x", "win_size": 1}, r"dset._target_, dset.win_size; valid keys of dset"),
        ({"sampling": "sad"}, r"dset.sampling='sad': expected one of random, activity"),
        ({"sources": "vocals"}, r"dset.sources='vocals': expected a list of source names"),
        ({"sources": ["vocals", "vocals"]}, r"dset.sources=.*expected distinct stem names"),
        ({"sources": ["mixture", "bass"]}, r"dset.sources=.*other than 'mixture'"),
        ({"sources": []}, r"dset.sources=\[\]: expected .*at least one"),
        ({"seq_duration": 0}, r"dset.seq_duration=0: expected a number > 0"),
        ({"seq_duration": "3"}, r"dset.seq_duration='3': expected a number > 0"),
        ({"sample_rate": 44100.0}, r"dset.sample_rate=44100.0: expected an integer"),
        ({"batch_size": 0}, r"dset.batch_size=0: expected an integer >= 1"),
        ({"num_workers": -1}, r"dset.num_workers=-1: expected an integer >= 0"),
        ({"n_samples": 0}, r"dset.n_samples=0: expected an integer >= 1 or null"),
        ({"samples_per_track": None}, r"dset.n_samples and dset.samples_per_track are both"),
        ({"random_track_mix": "yes"}, r"dset.random_track_mix='yes': expected true or false"),
        ({"augmentations": ["reverb"]}, r"dset.augmentations=\['reverb'\]: expected names"),
        ({"p_silenttarget": 2}, r"dset.p_silenttarget=2: expected a probability"),
        (
            {"rescale_db_min": 5, "rescale_db_max": 1},
            r"dset.rescale_db_min=5.0 and rescale_db_max=1.0: expected",
        ),
        ({"validation_tracks": "Leaf"}, r"dset.validation_tracks='Leaf': expected 'musdb'"),
        ({"validation_tracks": -1}, r"dset.validation_tracks=-1: expected 'musdb'"),
        ({"validation_tracks": True}, r"dset.validation_tracks=True: expected 'musdb'"),
        ({"eval_seq_duration": -1}, r"dset.eval_seq_duration=-1: expected a number > 0 or null"),
        ({"mixture": "sum"}, r"dset.mixture='sum': expected one of stems, file"),
        ({"data_dir": ""}, r"dset.data_dir='': expected a folder path"),
        ({"name": None}, r"dset.name=None: expected a non-empty string"),
        ({"activity": {"win_size": 6}}, r"dset.activity.win_size; valid keys of dset.activity"),
        ({"activity": {"win_duration": 0}}, r"dset.activity.win_duration=0: expected a number > 0"),
        ({"activity": {"n_chunks": 2.5}}, r"dset.activity.n_chunks=2.5: expected an integer"),
        ({"activity": {"overlap": "x"}}, r"invalid dset.activity.overlap='x': expected a number"),
        ({"activity": 3}, r"dset.activity=3: expected a mapping of ActivityParams keys"),
        ({"toy": {"n_train": 0}}, r"dset.toy.n_train=0"),
        ({"toy": {"seeds": 0}}, r"dset.toy.seeds; valid keys of dset.toy: n_train"),
    ],
)
def test_bad_settings_name_the_key(mapping: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        DataSettings.from_mapping(mapping)


def test_errors_are_typed() -> None:
    with pytest.raises(ConfigError, match="expected a mapping of dataset settings"):
        DataSettings.from_mapping(["data_dir"])
    with pytest.raises(BsrnnError):  # never a bare ValueError or TypeError
        DataSettings(seed="1")


def test_dataset_configs_start_from_the_settings_defaults() -> None:
    """musdb18hq.yaml starts from DataSettings' defaults (dset/_defaults); the other datasets
    build on it; no _target_; one data_dir (under dset) and one list of stems."""
    base = OmegaConf.load(CONF / "dset" / "musdb18hq.yaml")
    assert list(base.defaults) == ["_defaults", "_self_"]
    for name in ("musdb18hq_sad", "toy"):
        cfg = OmegaConf.load(CONF / "dset" / f"{name}.yaml")
        assert cfg.defaults[0] == "musdb18hq" and cfg.defaults[-1] == "_self_"
        assert cfg.name == name
        assert set(cfg) < {f.name for f in fields(DataSettings)} | {"defaults"}
    for path in (CONF / "dset").glob("*.yaml"):
        text = path.read_text()
        assert "_target_" not in text and "_convert_" not in text and "_global_" not in text
    top = OmegaConf.load(CONF / "config.yaml")
    assert "data_dir" not in top and "sources" not in top
    assert {"dset": DEFAULT_DATASET} in list(top.defaults)


@pytest.mark.parametrize("dset", ["musdb18hq", "musdb18hq_sad", "toy"])
def test_composed_configs_build_settings(dset: str) -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("config", overrides=[f"dset={dset}"])
    s = DataSettings.from_mapping(OmegaConf.to_container(cfg.dset, resolve=True))
    expected = {
        "musdb18hq": ("data/musdb18hq", "random", 256, None, False, "musdb", None),
        "musdb18hq_sad": ("data/musdb18hq", "activity", None, 20000, True, "musdb", None),
        "toy": ("data/toy", "random", 8, None, False, 2, ToyParams()),
    }[dset]
    got = (
        str(s.data_dir),
        s.sampling,
        s.samples_per_track,
        s.n_samples,
        s.peak_normalize,
        s.validation_tracks,
        s.toy,
    )
    assert got == expected
    assert s.name == dset and s.sample_rate == cfg.sample_rate and s.seed == cfg.seed
    suffix = "" if dset == DEFAULT_DATASET else f" dset={dset}"
    assert s.prep_command == "python prep_dataset.py" + suffix
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        default = compose("config")
    assert default.dset.name == DEFAULT_DATASET == "musdb18hq_sad"
