"""The augment config group: augment=reference (bit-identical to the seed's pipeline),
augment=msst (MSST's set: each effect family, mixup, loudness, MP3 of the mixture; seeded and
reproducible), augment=none, and the refusal of a config that needs the missing extra."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bsrnn.data import (
    Augmenter,
    AugmentSettings,
    DataSettings,
    MsstAugmenter,
    MusdbDataModule,
    SourceAugmenter,
    ToyParams,
    generate_toy_dataset,
    prepare_dataset,
)
from bsrnn.data.augment import crop_start
from bsrnn.data.msst_augment import (
    AUDIOMENTATIONS_EFFECTS,
    EFFECT_RANGES,
    MSST_ALL,
    MSST_STEMS,
    PEDALBOARD_EFFECTS,
)
from bsrnn.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SR = 44100
T = SR // 2
_t = np.arange(T) / SR
# stereo, channels differ, not a palindrome in time, not symmetric in sign
AUDIO = np.stack(
    [0.3 * np.sin(2 * np.pi * 220 * _t) * _t, 0.2 * np.sin(2 * np.pi * 330 * _t) + 0.05]
).astype(np.float32)
AUDIO += (0.01 * np.random.default_rng(0).standard_normal(AUDIO.shape)).astype(np.float32)
# every effect's ranges, as MSST documents them (the stem-only ones from vocals and other)
RANGES = {**MSST_ALL, **MSST_STEMS["vocals"], **MSST_STEMS["other"]}
OURS = ("channel_shuffle", "random_inverse", "random_polarity")


def only(effect: str | None, p: float = 1.0, **example_keys) -> AugmentSettings:
    """MSST's settings with every effect off but ``effect`` (probability ``p``)."""
    effects = {k: v for k, v in RANGES.items() if k not in EFFECT_RANGES}
    effects.update({e: 0.0 for e in EFFECT_RANGES})
    if effect is not None:
        effects[effect] = p
    keys = dict(loudness=False, mixup=False, mp3_compression_on_mixture=0.0)
    keys.update(example_keys)
    return AugmentSettings(name="msst", all=effects, stems={}, **keys)


@pytest.mark.parametrize("effect", list(EFFECT_RANGES))
def test_each_effect_changes_audio_at_p1_only_keeps_shape_and_is_seeded(effect: str) -> None:
    on = MsstAugmenter(only(effect, 1.0), SR)
    off = MsstAugmenter(only(effect, 0.0), SR)
    effects = on.effects_for("vocals")
    py_state, np_state = random.getstate(), np.random.get_state()[1].copy()

    out = on.apply_effects(AUDIO, effects, np.random.default_rng(1))
    again = on.apply_effects(AUDIO, effects, np.random.default_rng(1))
    other = on.apply_effects(AUDIO, effects, np.random.default_rng(2))
    assert out.shape == AUDIO.shape and out.dtype == np.float32 and np.isfinite(out).all()
    # (bitcrush at up to 16 bits changes samples by about 1e-5)
    assert np.abs(out - AUDIO).max() > 1e-6, f"{effect} at p=1 left the audio as it was"
    np.testing.assert_array_equal(out, again)  # a seeded generator gives the same audio
    if effect not in ("channel_shuffle", "random_inverse", "random_polarity"):
        assert not np.array_equal(out, other), f"{effect}: its parameters ignore the generator"
    unchanged = off.apply_effects(AUDIO, off.effects_for("vocals"), np.random.default_rng(1))
    np.testing.assert_array_equal(unchanged, AUDIO)
    # the global generators audiomentations draws from are left as they were
    assert random.getstate() == py_state
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)


def test_our_effects_do_what_msst_does() -> None:
    def run(effect: str) -> np.ndarray:
        aug = MsstAugmenter(only(effect), SR)
        return aug.apply_effects(AUDIO, aug.effects_for("bass"), np.random.default_rng(0))

    np.testing.assert_array_equal(run("channel_shuffle"), AUDIO[::-1])
    np.testing.assert_array_equal(run("random_inverse"), AUDIO[:, ::-1])
    np.testing.assert_array_equal(run("random_polarity"), -AUDIO)


def test_stem_sections_override_all_and_mono_works() -> None:
    settings = replace(only("random_polarity"), stems={"bass": {"random_polarity": 0.0}})
    aug = MsstAugmenter(settings, SR)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(aug.apply_effects(AUDIO, aug.effects_for("bass"), rng), AUDIO)
    np.testing.assert_array_equal(aug.apply_effects(AUDIO, aug.effects_for("drums"), rng), -AUDIO)
    default = AugmentSettings(name="msst")
    vocals = MsstAugmenter(default, SR).effects_for("vocals")
    assert vocals["pitch_shift"] == 0.1 and vocals["pitch_shift_max_semitones"] == 5.0
    assert vocals["random_polarity"] == 0.5  # from all
    for effect in (*AUDIOMENTATIONS_EFFECTS, *PEDALBOARD_EFFECTS[:2]):  # mono sources too
        mono_aug = MsstAugmenter(only(effect), SR)
        mono = mono_aug.apply_effects(AUDIO[:1], mono_aug.effects_for("x"), rng)
        assert mono.shape == (1, T)


def test_mixup_draws_more_crops_with_msst_probabilities() -> None:
    calls = []

    def draw_more() -> np.ndarray:
        calls.append(1)
        return np.full_like(AUDIO, 0.5)

    rng = np.random.default_rng(0)
    always = MsstAugmenter(only(None, mixup=True, mixup_probs=(1.0, 1.0)), SR)
    out = always.source(AUDIO, "vocals", rng, draw_more)
    assert len(calls) == 2 and out.shape == AUDIO.shape and not np.allclose(out, AUDIO)
    calls.clear()
    never = MsstAugmenter(only(None, mixup=True, mixup_probs=(0.0, 0.0)), SR)
    alone = never.source(AUDIO, "vocals", rng, draw_more)
    ratio = alone / AUDIO  # one crop: scaled by a gain in [0.5, 1.5] (MSST averages one item)
    assert not calls and np.allclose(ratio, ratio.flat[0]) and 0.5 <= ratio.flat[0] <= 1.5
    off = MsstAugmenter(only(None, mixup=False), SR)
    np.testing.assert_array_equal(off.source(AUDIO, "vocals", rng, draw_more), AUDIO)
    assert not calls
    # MSST's probabilities (0.2, 0.02), drawn independently: 0.22 more crops per source
    msst = MsstAugmenter(only(None, mixup=True), SR)
    assert msst.settings.mixup_probs == (0.2, 0.02)
    for seed in range(2000):
        msst.source(AUDIO, "vocals", np.random.default_rng(seed), draw_more)
    assert 0.19 < len(calls) / 2000 < 0.25


def test_loudness_per_stem_and_mp3_of_the_mixture() -> None:
    stems = np.stack([AUDIO, AUDIO, AUDIO])
    rng = np.random.default_rng(0)
    loud = MsstAugmenter(only(None, loudness=True), SR).example(stems, [0], rng)
    gains = loud[:, 0, 100] / stems[:, 0, 100]
    assert np.allclose(loud, stems * gains[:, None, None], rtol=1e-6)
    assert len(set(np.round(gains, 6))) == 3 and ((gains >= 0.5) & (gains <= 1.5)).all()
    quiet = MsstAugmenter(only(None), SR)
    np.testing.assert_array_equal(quiet.example(stems, [0], rng), stems)
    mix = AUDIO.sum(axis=0, keepdims=True).repeat(2, axis=0)
    np.testing.assert_array_equal(quiet.mixture(mix, rng), mix)
    mp3 = MsstAugmenter(only(None, mp3_compression_on_mixture=1.0), SR)
    out = mp3.mixture(mix, np.random.default_rng(3))
    assert out.shape == mix.shape and out.dtype == np.float32 and not np.allclose(out, mix)
    np.testing.assert_array_equal(out, mp3.mixture(mix, np.random.default_rng(3)))


def test_settings_are_checked_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"dset.augment.name='msst2'.*reference, msst, none"):
        AugmentSettings(name="msst2")
    with pytest.raises(ConfigError, match=r"'pitchshift' in dset.augment.all"):
        AugmentSettings(all={"pitchshift": 0.1})
    with pytest.raises(ConfigError, match=r"dset.augment.stems.vocals.pitch_shift=1.5"):
        AugmentSettings(stems={"vocals": {"pitch_shift": 1.5}})
    with pytest.raises(ConfigError, match=r"needs pitch_shift_min_semitones"):
        AugmentSettings(stems={"guitar": {"pitch_shift": 0.5, "pitch_shift_max_semitones": 2}})
    with pytest.raises(ConfigError, match=r"mixup_probs=\[0.2, 2\]"):
        AugmentSettings(mixup_probs=[0.2, 2])
    with pytest.raises(ConfigError, match=r"loudness_min=2.0 and loudness_max=1.0"):
        AugmentSettings(loudness_min=2.0, loudness_max=1.0)
    with pytest.raises(ConfigError, match=r"mp3_compression_backend='lameenc'"):
        AugmentSettings(all={**MSST_ALL, "mp3_compression_backend": "lameenc"})
    with pytest.raises(ConfigError, match=r"unknown key.*dset.augment"):
        DataSettings(augment={"name": "msst", "loudnes": True})


def test_msst_without_the_extra_is_refused_naming_it(monkeypatch) -> None:
    import bsrnn.data.settings as settings_module

    monkeypatch.setattr(settings_module, "missing_modules", lambda names: list(names))
    with pytest.raises(ConfigError) as err:
        DataSettings(augment={"name": "msst"})
    message = str(err.value)
    assert "\n" not in message and 'pip install -e ".[augment]"' in message
    assert "audiomentations, pedalboard, fast_mp3_augment" in message
    # reference, none and an MSST set of our own effects only need nothing
    DataSettings(augment={"name": "reference"})
    DataSettings(augment={"name": "none"})
    own = only("random_polarity", loudness=True, mixup=True)
    assert DataSettings(augment=own).augment.name == "msst"


def composed_settings(*overrides: str) -> DataSettings:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("config", overrides=list(overrides))
    return DataSettings.from_mapping(OmegaConf.to_container(cfg.dset, resolve=True))


def test_the_group_composes() -> None:
    default = composed_settings("dset=musdb18hq")
    assert default.augment.name == "reference"
    assert type(default.augmenter()) is SourceAugmenter
    assert default.augmenter().names == ("randomcrop", "rescale", "channelswap")
    msst = composed_settings("dset=toy", "augment=msst", "dset.augment.stems.bass.pitch_shift=0.5")
    assert msst.augment.mixup_probs == (0.2, 0.02) and msst.augment.all["channel_shuffle"] == 0.5
    assert msst.augment.stems["bass"]["pitch_shift"] == 0.5
    assert isinstance(msst.augmenter(), MsstAugmenter)
    none = composed_settings("dset=musdb18hq_sad", "augment=none")
    assert type(none.augmenter()) is Augmenter and none.augmenter().names == ()


# --------------------------------------------------------------------------------------------
# Loader: augment=reference gives the seed's batches bit for bit; msst is seeded
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    params = ToyParams(n_train=3, n_test=1, min_duration=6.0, max_duration=6.0, seed=3)
    generate_toy_dataset(root, params, progress=False)
    prepare_dataset(DataSettings(data_dir=root, validation_tracks=1), progress=False)
    return root


def seed_pipeline_example(ds, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The training example as the code before the augment group drew it (frozen copy of the
    seed's ``TrainingExamples._draw`` and ``__getitem__``, reference augmentations)."""
    rng = ds.rng(epoch, index)
    aug: SourceAugmenter = ds.augmenter
    for _attempt in range(100):
        if ds.random_track_mix:
            stems = []
            for source in ds.sources:
                pool = ds.excerpts[source]
                seg = pool[int(rng.integers(len(pool)))]
                stems.append(ds._read(seg, source, crop_start(seg.frames, ds.seq_len, rng)))
        else:
            pool = ds.excerpts[ds.targets[0]]
            seg = pool[int(rng.integers(len(pool)))]
            offset = crop_start(seg.frames, ds.seq_len, rng)
            stems = [ds._read(seg, source, offset) for source in ds.sources]
        sources = np.stack([aug(audio, rng) for audio in stems])
        sources = aug.silence_target(sources, ds.target_rows, rng)
        mixture = sources.sum(axis=0)
        if ds.peak_normalize:
            peak = float(np.max(np.abs(mixture)))
            if peak > 0.0:
                sources = sources / np.float32(peak)
                mixture = sources.sum(axis=0)
        if float(np.sqrt(np.mean(np.square(mixture, dtype=np.float64)))) >= 1e-4:
            return mixture, sources[ds.target_rows]
    raise AssertionError(f"silent example {index}")


@pytest.mark.parametrize("dset", ["musdb18hq", "musdb18hq_sad", "toy"])
def test_reference_gives_the_seed_pipelines_examples_bit_for_bit(toy_root, dset) -> None:
    overrides = [f"dset={dset}", f"dset.data_dir={toy_root}", "dset.validation_tracks=1"]
    for extra in ([], ["dset.augmentations=[rescale,channelswap,silentsource,silenttarget]"]):
        settings = composed_settings(*overrides, *extra, "augment=reference")
        for targets in (["vocals"], ["drums", "vocals"]):
            ds = MusdbDataModule(settings, targets=targets).build_train_dataset()
            for epoch, index in ((0, 0), (1, 3), (2, 5)):
                mixture, references = ds[(epoch, index)]
                want_mix, want_refs = seed_pipeline_example(ds, epoch, index)
                assert torch.equal(mixture, torch.from_numpy(want_mix))
                assert torch.equal(references, torch.from_numpy(np.ascontiguousarray(want_refs)))


def test_msst_examples_are_seeded_and_differ_from_reference(toy_root) -> None:
    overrides = ["dset=toy", f"dset.data_dir={toy_root}", "dset.validation_tracks=1"]
    every = [f"dset.augment.all.{e}=1.0" for e in ("pedalboard_chorus", "random_polarity")]
    every += ["dset.augment.stems.other.gaussian_noise=1.0", "dset.augment.mixup_probs=[1.0]"]
    every += ["dset.augment.stems.vocals.pitch_shift=1.0"]
    settings = composed_settings(*overrides, "dset.seq_duration=1.0", "augment=msst", *every)
    ds = MusdbDataModule(settings, targets=["vocals", "other"]).build_train_dataset()
    first = ds[(0, 1)]
    assert first[0].shape == (2, SR) and first[1].shape == (2, 2, SR)
    for a, b in zip(first, ds[(0, 1)]):
        assert torch.equal(a, b)
    for a, b in zip(first, ds[(0, 2)]):
        assert not torch.equal(a, b)
    reference = composed_settings(*overrides, "dset.seq_duration=1.0")
    ref_ds = MusdbDataModule(reference, targets=["vocals", "other"]).build_train_dataset()
    assert not torch.equal(first[0], ref_ds[(0, 1)][0])
    # augment=none: the dataset's list (rescale, channelswap) is not applied
    none = composed_settings(*overrides, "dset.seq_duration=1.0", "augment=none")
    all_four = ["vocals", "bass", "drums", "other"]
    plain = MusdbDataModule(none, targets=all_four).build_train_dataset()
    scaled = MusdbDataModule(reference, targets=all_four).build_train_dataset()
    mixture, references = plain[(0, 1)]
    assert torch.equal(mixture, references.sum(0)) and not torch.equal(mixture, scaled[(0, 1)][0])


# --------------------------------------------------------------------------------------------
# train.py with augment=msst: trains, and one seed gives the same weights twice
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_train_with_msst_augmentations_repeats_exactly(toy_data, tmp_path) -> None:
    import sys

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from conftest import run_config

    import train as train_script
    from bsrnn.checkpoints import read_checkpoint

    # MSST's set, with effects that draw from the global generators (audiomentations) and
    # from ours (pedalboard, mixup) made certain, so that a run exercises them
    certain = [
        "dset.augment.stems.other.gaussian_noise=1.0",
        "dset.augment.stems.vocals.pitch_shift=1.0",
        "dset.augment.all.pedalboard_chorus=1.0",
        "dset.augment.mixup_probs=[1.0,0.02]",
    ]
    states = []
    for run in ("a", "b"):
        overrides = [
            "dset=toy",
            f"dset.data_dir={toy_data}",
            "src_mod=simo-bsrnn-tiny",
            "augment=msst",
            "optim.max_epochs=1",
            f"out_dir={tmp_path / run / 'outputs'}",
            f"tb_dir={tmp_path / run / 'tb'}",
            "src_mod.feature_dim=8",
            "src_mod.num_repeat=1",
            "dset.validation_tracks=1",
            "dset.samples_per_track=2",
            "dset.seq_duration=1.0",
            "dset.eval_seq_duration=0.5",
            "dset.num_workers=0",
            "trainer.accelerator=cpu",
            "trainer.num_sanity_val_steps=0",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
            *certain,
        ]
        result = train_script.train(run_config(overrides))
        assert result["global_step"] == 2
        states.append(read_checkpoint(result["last_path"])["state_dict"])
    assert states[0].keys() == states[1].keys()
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key
