"""Augmentations: each one's behaviour, and unknown names failing at construction."""

from __future__ import annotations

import numpy as np
import pytest

from bsrnn.data import AUGMENTATIONS, AugmentationParams, DataSettings, SourceAugmenter
from bsrnn.data.augment import (
    channelswap,
    crop_start,
    rescale,
    rescale_db,
    silentsource,
    silenttarget,
)
from bsrnn.errors import ConfigError

STEREO = np.stack([np.full(100, 0.5, np.float32), np.full(100, -0.25, np.float32)])


def test_rescale_gain_within_range() -> None:
    rng = np.random.default_rng(0)
    gains = np.array([rescale(STEREO, rng, 0.25, 1.25)[0, 0] / 0.5 for _ in range(500)])
    assert gains.min() >= 0.25 and gains.max() <= 1.25
    assert gains.min() < 0.35 and gains.max() > 1.15  # the whole range is drawn
    out = rescale(STEREO, rng, 0.25, 1.25)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[1] / STEREO[1], out[0] / STEREO[0], rtol=1e-6)  # one gain


def test_rescale_db_within_range() -> None:
    rng = np.random.default_rng(1)
    db = np.array([20 * np.log10(rescale_db(STEREO, rng, -10, 10)[0, 0] / 0.5) for _ in range(500)])
    assert db.min() >= -10 - 1e-4 and db.max() <= 10 + 1e-4
    assert db.min() < -8 and db.max() > 8
    assert abs(np.mean(db)) < 1.5  # uniform in dB


def test_channelswap_swaps() -> None:
    rng = np.random.default_rng(2)
    swapped = channelswap(STEREO, rng, 1.0)
    np.testing.assert_array_equal(swapped, STEREO[::-1])
    np.testing.assert_array_equal(channelswap(STEREO, rng, 0.0), STEREO)
    mono = STEREO[:1]
    np.testing.assert_array_equal(channelswap(mono, rng, 1.0), mono)
    n_swaps = sum(channelswap(STEREO, rng, 0.5)[0, 0] < 0 for _ in range(1000))
    assert 430 < n_swaps < 570


def test_silentsource_silences() -> None:
    rng = np.random.default_rng(3)
    assert not silentsource(STEREO, rng, 1.0).any()
    np.testing.assert_array_equal(silentsource(STEREO, rng, 0.0), STEREO)
    n_silent = sum(not silentsource(STEREO, rng, 0.1).any() for _ in range(2000))
    assert 140 < n_silent < 260


def test_silenttarget_silences_one_target() -> None:
    rng = np.random.default_rng(6)
    stems = np.stack([STEREO + k for k in range(4)])  # [S, C, T], no silent row
    out = silenttarget(stems, [3, 1], rng, 1.0)
    quiet = [k for k in range(4) if not out[k].any()]
    assert len(quiet) == 1 and quiet[0] in (1, 3)
    np.testing.assert_array_equal(np.delete(out, quiet, 0), np.delete(stems, quiet, 0))
    assert stems.all()  # the input is not modified
    assert silenttarget(stems, [1], rng, 0.0) is stems
    picks = [silenttarget(stems, [3, 1], rng, 0.1) for _ in range(2000)]
    n_silenced = sum(not p[1].any() or not p[3].any() for p in picks)
    assert 140 < n_silenced < 260
    rows = [next(k for k in (1, 3) if not p[k].any()) for p in picks if p is not stems]
    assert 0.35 < rows.count(1) / len(rows) < 0.65  # either target, uniformly
    aug = SourceAugmenter(["silenttarget"], AugmentationParams(p_silenttarget=1.0))
    np.testing.assert_array_equal(aug(STEREO, rng), STEREO)  # not a per-source augmentation
    assert not aug.silence_target(stems, [2], rng)[2].any()
    assert SourceAugmenter(["rescale"]).silence_target(stems, [2], rng) is stems


def test_crop_start() -> None:
    rng = np.random.default_rng(4)
    starts = [crop_start(1000, 300, rng) for _ in range(2000)]
    assert min(starts) == 0 and max(starts) == 700  # every position reachable, none outside
    assert crop_start(1000, 300, None) == 350  # centred without a generator (fast_tr)
    assert crop_start(300, 300, rng) == 0
    with pytest.raises(ValueError, match="cannot crop 301"):
        crop_start(300, 301, rng)


def test_augmenter_applies_listed_augmentations() -> None:
    params = AugmentationParams(p_silentsource=1.0, p_channelswap=1.0)
    rng = np.random.default_rng(5)
    assert not SourceAugmenter(["silentsource"], params)(STEREO, rng).any()
    out = SourceAugmenter(["channelswap"], params)(STEREO, rng)
    np.testing.assert_array_equal(out, STEREO[::-1])
    aug = SourceAugmenter(["randomcrop"], params)  # accepted; the crop is always random
    np.testing.assert_array_equal(aug(STEREO, rng), STEREO)  # randomcrop: no waveform change


def test_unknown_augmentation_fails_listing_valid_ones() -> None:
    with pytest.raises(ConfigError) as err:
        SourceAugmenter(["rescale", "pitchshift"])
    msg = str(err.value)
    assert "'pitchshift'" in msg and all(name in msg for name in AUGMENTATIONS)
    with pytest.raises(ConfigError, match=r"dset.augmentations=\['reverb'\].*'randomcrop'"):
        DataSettings(augmentations=["reverb"])


def test_bad_augmentation_parameters() -> None:
    with pytest.raises(ConfigError, match="p_silentsource=1.5"):
        AugmentationParams(p_silentsource=1.5)
    with pytest.raises(ConfigError, match="p_silenttarget=-1"):
        AugmentationParams(p_silenttarget=-1)
    with pytest.raises(ConfigError, match="rescale_min"):
        AugmentationParams(rescale_min=2.0, rescale_max=1.0)
    with pytest.raises(ConfigError, match=r"dset.p_channelswap=-0.1: expected a probability"):
        DataSettings(p_channelswap=-0.1)
    with pytest.raises(ConfigError, match=r"dset.rescale_min=2.0 and rescale_max=1.0"):
        DataSettings(rescale_min=2.0, rescale_max=1.0)
