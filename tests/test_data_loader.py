"""Training examples, loaders and the DataModule: batches, source order, determinism, workers,
augmentations acting on whole examples, configs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bsrnn.audio import read_audio
from bsrnn.data import (
    AugmentationParams,
    DatasetError,
    DataSettings,
    EpochSampler,
    MusdbDataModule,
    Segment,
    SourceAugmenter,
    ToyParams,
    TrainingExamples,
    discover_tracks,
    generate_toy_dataset,
    prepare_dataset,
)
from bsrnn.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["vocals", "bass", "drums", "other"]
SR = 44100


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 train songs (1 for validation) and 1 test song of 8 s, with the activity index."""
    root = tmp_path_factory.mktemp("toy")
    params = ToyParams(n_train=4, n_test=1, min_duration=8.0, max_duration=8.0, seed=3)
    generate_toy_dataset(root, params, progress=False)
    prepare_dataset(DataSettings(data_dir=root, validation_tracks=1), progress=False)
    return root


def make_dm(
    root: Path, targets: tuple[str, ...] = ("vocals",), fast_tr: bool = False, **kwargs
) -> MusdbDataModule:
    args = dict(data_dir=root, validation_tracks=1, samples_per_track=4, num_workers=0)
    args.update(kwargs)
    return MusdbDataModule(DataSettings(**args), targets=targets, fast_tr=fast_tr)


SAD = dict(
    sampling="activity",
    n_samples=12,
    samples_per_track=None,
    augmentations=["randomcrop", "rescale_db", "silentsource"],
    peak_normalize=True,
)


def batches(loader, epoch: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    return list(loader)


@pytest.mark.parametrize("kind", ["random", "activity"])
def test_train_batches(toy_root: Path, kind: str) -> None:
    dm = make_dm(toy_root, targets=SOURCES, **(SAD if kind == "activity" else {}))
    dm.setup("fit")
    loader = dm.train_dataloader()
    got = batches(loader)
    assert len(got) == 6  # 12 examples: 4 per track x 3 tracks, or n_samples
    for mixture, sources in got:
        assert mixture.shape == (2, 2, 3 * SR) and sources.shape == (2, 4, 2, 3 * SR)
        assert mixture.dtype == sources.dtype == torch.float32
        torch.testing.assert_close(mixture, sources.sum(1), rtol=0, atol=1e-6)
        rms = mixture.square().mean(dim=(1, 2)).sqrt()
        assert (rms > 1e-4).all()  # never a silent mixture
        if kind == "activity":  # divided by the mixture's peak
            peaks = mixture.abs().amax(dim=(1, 2))
            torch.testing.assert_close(peaks, torch.ones(2), atol=1e-5, rtol=0)


def stems_at(track, names, start: int, length: int) -> np.ndarray:
    return np.stack([read_audio(track.stem_path(n), start, start + length)[0] for n in names])


def test_batches_hold_the_targets_in_their_order_fast_tr_is_fixed(toy_root: Path) -> None:
    """References are the targets in the order of ``targets``; the mixture sums every source."""
    order = ["drums", "vocals", "other", "bass"]
    dm = make_dm(toy_root, targets=("bass", "vocals"), fast_tr=True, sources=order)
    dm.setup("fit")
    first, second = batches(dm.train_dataloader()), batches(dm.train_dataloader(), epoch=5)
    for (m1, s1), (m2, s2) in zip(first, second):
        assert torch.equal(m1, m2) and torch.equal(s1, s2)
    mixture, references = first[0]
    assert mixture.shape == (2, 2, 3 * SR) and references.shape == (2, 2, 2, 3 * SR)
    # example 0: no augmentation, no mixing: the centred 3 s of the first training track
    track = discover_tracks(toy_root, "train", validation_tracks=1)[0]
    start = (track.frames - 3 * SR) // 2
    np.testing.assert_array_equal(
        references[0].numpy(), stems_at(track, ["bass", "vocals"], start, 3 * SR)
    )
    np.testing.assert_allclose(
        mixture[0].numpy(), stems_at(track, order, start, 3 * SR).sum(0), atol=1e-6
    )
    # validation overfits the same examples, one per batch
    val = list(dm.val_dataloader())
    assert len(val) == 2 and torch.equal(val[0][1][0], references[0])


def test_target_found_by_name_whatever_the_source_order(toy_root: Path) -> None:
    """dset.sources in another order than the default still gives the vocals for target vocals
    (the old train.py took the index from a separate list: it trained vocals against bass)."""
    order = ["bass", "vocals", "drums", "other"]
    dm = make_dm(toy_root, targets=["vocals"], fast_tr=True, sources=order)
    dm.setup("fit")
    _, references = next(iter(dm.train_dataloader()))
    track = discover_tracks(toy_root, "train", validation_tracks=1)[0]
    start = (track.frames - 3 * SR) // 2
    assert references.shape == (2, 1, 2, 3 * SR)
    vocals = stems_at(track, ["vocals"], start, 3 * SR)
    np.testing.assert_array_equal(references[0].numpy(), vocals)
    # validation and test batches too
    dm = make_dm(toy_root, targets=["vocals"], sources=order, eval_seq_duration=1.0)
    valid = discover_tracks(toy_root, "valid", validation_tracks=1)[0]
    mixture, references = next(iter(dm.val_dataloader()))
    np.testing.assert_array_equal(references[0].numpy(), stems_at(valid, ["vocals"], 0, SR))
    np.testing.assert_allclose(
        mixture[0].numpy(), stems_at(valid, order, 0, SR).sum(0), rtol=0, atol=1e-6
    )
    test = discover_tracks(toy_root, "test")[0]
    _, references = next(iter(dm.test_dataloader()))
    np.testing.assert_array_equal(references[0].numpy(), stems_at(test, ["vocals"], 0, test.frames))


def test_crop_position_is_random_without_randomcrop(toy_root: Path) -> None:
    """The crop position never depends on an augmentation's name: a list without randomcrop
    still crops at random positions (it used to take the centre every time)."""
    track = discover_tracks(toy_root, "train", validation_tracks=1)[0]
    whole = {s: [Segment(track, 0, track.frames)] for s in SOURCES}
    vocals = read_audio(track.stem_path("vocals"))[0][0]
    n = SR // 10

    def start_of(ref: np.ndarray) -> int:
        """Where in the track the (unaugmented) crop was cut."""
        first = int(np.flatnonzero(ref)[0])
        for i in np.flatnonzero(vocals == ref[first]) - first:
            if np.array_equal(vocals[i : i + n], ref):
                return int(i)
        raise AssertionError("crop not found in the track")

    starts = {}
    for names in ([], ["randomcrop"]):
        data = TrainingExamples(
            whole, SOURCES, ["vocals"], n, 8, SourceAugmenter(names), random_track_mix=False
        )
        starts[len(names)] = [start_of(data[i][1][0, 0].numpy()) for i in range(8)]
        assert len(set(starts[len(names)])) == 8
    assert starts[0] == starts[1]  # randomcrop is always on: listing it changes nothing


def test_same_seed_same_batches_whatever_the_workers(toy_root: Path) -> None:
    def run(seed: int, workers: int, epoch: int = 0) -> list:
        dm = make_dm(toy_root, seed=seed, num_workers=workers)
        dm.setup("fit")
        return batches(dm.train_dataloader(), epoch)

    reference = run(7, 0)
    for other in (run(7, 0), run(7, 2)):
        for (m1, s1), (m2, s2) in zip(reference, other, strict=True):
            assert torch.equal(m1, m2) and torch.equal(s1, s2)
    for other in (run(8, 0), run(7, 0, epoch=1)):  # another seed, another epoch
        assert not any(torch.equal(a[0], b[0]) for a, b in zip(reference, other))


def test_workers_and_ranks_draw_different_examples(toy_root: Path) -> None:
    dm = make_dm(toy_root, num_workers=2, batch_size=1, samples_per_track=8)
    dm.setup("fit")
    loader = dm.train_dataloader()
    examples = [m[0] for m, _ in batches(loader)]  # workers 0 and 1 take turns
    assert len(examples) == 24
    for i in range(len(examples)):
        for j in range(i + 1, len(examples)):
            assert not torch.equal(examples[i], examples[j]), (i, j)
    # distributed: each rank gets its own indices (and its own random stream)
    dataset = dm.build_train_dataset()
    keys = [list(EpochSampler(dataset, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(keys[0]) == len(keys[1]) == 12
    assert not {k[1] for k in keys[0]} & {k[1] for k in keys[1]}
    other_rank = dm.build_train_dataset(rank=1)
    assert not torch.equal(dataset[(0, 0)][0], other_rank[(0, 0)][0])


def test_random_track_mix(toy_root: Path) -> None:
    """With mixing each source comes from any track; without it, from one track and position."""
    tracks = discover_tracks(toy_root, "train", validation_tracks=1)
    whole = [Segment(t, 0, t.frames) for t in tracks]
    excerpts = {s: whole for s in SOURCES}

    stems = {(t.name, s): read_audio(t.stem_path(s))[0][0] for t in tracks for s in SOURCES}

    def origin(example: torch.Tensor, source: str) -> str:
        """The track the source's audio was cut from (no augmentation: exact samples)."""
        x = example[0].numpy()
        if not x.any():
            return "silent"
        first = int(np.flatnonzero(x)[0])
        for t in tracks:
            audio = stems[t.name, source]
            for i in np.flatnonzero(audio == x[first]) - first:
                if np.array_equal(audio[i : i + x.size], x):
                    return t.name
        raise AssertionError(f"{source} audio not found in any track")

    aug = SourceAugmenter(["randomcrop"])
    mixed = TrainingExamples(excerpts, SOURCES, SOURCES, SR // 10, 20, aug, random_track_mix=True)
    single = TrainingExamples(excerpts, SOURCES, SOURCES, SR // 10, 20, aug, random_track_mix=False)
    n_mixed = n_single = 0
    for i in range(6):
        _, s = mixed[i]
        n_mixed += len({origin(s[k], src) for k, src in enumerate(SOURCES)} - {"silent"}) > 1
        _, s = single[i]
        n_single += len({origin(s[k], src) for k, src in enumerate(SOURCES)} - {"silent"}) > 1
    assert n_single == 0 and n_mixed >= 3


def test_silent_material_is_redrawn(tmp_path: Path) -> None:
    for name, level in (("loud", 0.1), ("silent", 0.0)):
        folder = tmp_path / "train" / name
        folder.mkdir(parents=True)
        for stem in ["mixture", *SOURCES]:
            audio = level * np.random.default_rng(0).standard_normal((SR, 2))
            sf.write(folder / f"{stem}.wav", audio, SR, subtype="FLOAT")
    tracks = discover_tracks(tmp_path, "train", validation_tracks=[])
    excerpts = {s: [Segment(t, 0, t.frames) for t in tracks] for s in SOURCES}
    data = TrainingExamples(excerpts, SOURCES, ["vocals"], SR // 4, 30, SourceAugmenter(), False)
    for i in range(30):  # half of the draws land on the silent track: all are redrawn
        assert data[i][0].abs().max() > 0.01
    silent_only = {s: [e for e in excerpts[s] if e.track.name == "silent"] for s in SOURCES}
    data = TrainingExamples(silent_only, SOURCES, ["vocals"], SR // 4, 3, SourceAugmenter())
    with pytest.raises(DatasetError, match="no non-silent mixture"):
        data[0]


def test_silenttarget_removes_a_target_from_the_mixture(toy_root: Path) -> None:
    """silenttarget: the silenced target's reference is zeros and the mixture lacks it; with
    several targets one of them, chosen at random, is silenced."""
    tracks = discover_tracks(toy_root, "train", validation_tracks=1)
    excerpts = {s: [Segment(t, 0, t.frames) for t in tracks] for s in SOURCES}
    targets = ["drums", "bass"]  # present all along the toy songs

    def examples(p: float) -> TrainingExamples:
        aug = SourceAugmenter(["rescale", "silenttarget"], AugmentationParams(p_silenttarget=p))
        return TrainingExamples(excerpts, SOURCES, targets, SR // 2, 12, aug)

    never, always = examples(0.0), examples(1.0)
    silenced = []
    for i in range(12):  # the same draws, with and without silencing
        (mix0, ref0), (mix1, ref1) = never[i], always[i]
        assert all(ref0[k].abs().max() > 1e-3 for k in range(len(targets)))
        quiet = [k for k in range(len(targets)) if not ref1[k].any()]
        assert len(quiet) == 1
        (k,) = quiet
        torch.testing.assert_close(ref1[1 - k], ref0[1 - k], rtol=0, atol=0)
        torch.testing.assert_close(mix1, mix0 - ref0[k], rtol=0, atol=1e-6)
        silenced.append(targets[k])
    assert set(silenced) == set(targets)


def test_validation_and_test_loaders(toy_root: Path) -> None:
    dm = make_dm(toy_root, targets=SOURCES)
    dm.setup("validate")
    dm.setup("test")
    (mixture, sources), *rest = list(dm.val_dataloader())
    assert not rest  # one validation track, whole
    track = discover_tracks(toy_root, "valid", validation_tracks=1)[0]
    assert mixture.shape == (1, 2, track.frames) and sources.shape == (1, 4, 2, track.frames)
    expected, _ = read_audio(track.stem_path("mixture"))
    np.testing.assert_array_equal(mixture[0].numpy(), expected)
    torch.testing.assert_close(mixture, sources.sum(1), atol=1e-6, rtol=0)
    test = list(dm.test_dataloader())
    assert len(test) == 1 and test[0][1].shape[:3] == (1, 4, 2)
    cropped = make_dm(toy_root, targets=["other"], eval_seq_duration=2.0, mixture="file")
    cropped.setup("validate")
    mixture, sources = next(iter(cropped.val_dataloader()))
    assert mixture.shape == (1, 2, 2 * SR) and sources.shape == (1, 1, 2, 2 * SR)
    np.testing.assert_array_equal(mixture[0].numpy(), expected[:, : 2 * SR])


def test_constructor_checks(toy_root: Path) -> None:
    with pytest.raises(ConfigError, match=r"target\(s\) 'piano' not among.*dset.sources="):
        make_dm(toy_root, targets=["vocals", "piano"])
    with pytest.raises(ConfigError, match="expected a list of source names"):
        make_dm(toy_root, targets="vocals")
    with pytest.raises(ConfigError, match="distinct"):
        make_dm(toy_root, targets=["vocals", "vocals"])
    with pytest.raises(ConfigError, match="needs DataSettings"):
        MusdbDataModule({"data_dir": str(toy_root)}, targets=["vocals"])
    dm = make_dm(toy_root, data_dir=toy_root / "nowhere")
    with pytest.raises(DatasetError, match="python prep_dataset.py dset=toy"):
        dm.prepare_data()


class _Recorder(L.LightningModule):
    """Records the first sample of every training batch."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[int, torch.Tensor]] = []

    def training_step(self, batch, batch_idx):
        mixture, sources = batch
        self.seen.append((self.current_epoch, mixture[:, 0, :100].clone()))
        return (self.w * mixture.mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.parametrize("fast_tr", [False, True])
def test_lightning_epochs(toy_root: Path, fast_tr: bool) -> None:
    """Lightning keeps the sampler and sets its epoch: new examples every epoch, unless
    fast_tr (overfit_batches=1) where the batch never changes."""
    dm = make_dm(toy_root, fast_tr=fast_tr)
    module = _Recorder()
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=0,
        overfit_batches=1 if fast_tr else 0.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, datamodule=dm)
    by_epoch = [torch.cat([x for e, x in module.seen if e == epoch]) for epoch in (0, 1)]
    assert torch.equal(by_epoch[0], by_epoch[1]) == fast_tr


@pytest.mark.parametrize("dset", ["musdb18hq", "musdb18hq_sad", "toy"])
def test_configs_build(toy_root: Path, dset: str) -> None:
    """Each dset config composes (musdb18hq_sad and toy inherit musdb18hq) into DataSettings
    and a DataModule that yields batches, the way train.py builds them."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("config", overrides=[f"dset={dset}", f"dset.data_dir={toy_root}"])
    settings = DataSettings.from_mapping(OmegaConf.to_container(cfg.dset, resolve=True))
    dm = MusdbDataModule(settings, targets=["vocals"])
    assert settings.name == dset and dm.targets == ["vocals"]
    assert settings.data_dir == toy_root and settings.sources == tuple(SOURCES)
    assert settings.seq_len == 3 * SR and settings.activity.win_duration == 6.0
    assert settings.mixture == "stems" and settings.p_silenttarget == 0.1
    expected = {
        "musdb18hq": ("random", ("randomcrop", "rescale", "channelswap"), False, 256, None),
        "musdb18hq_sad": (
            "activity",
            ("randomcrop", "rescale_db", "silentsource"),
            True,
            None,
            20000,
        ),
        "toy": ("random", ("randomcrop", "rescale", "channelswap"), False, 8, None),
    }[dset]
    s = settings
    got = (s.sampling, dm.augmenter.names, s.peak_normalize, s.samples_per_track, s.n_samples)
    assert got == expected
    assert dm.augmenter.params.rescale_min == 0.25 and dm.augmenter.params.p_silentsource == 0.1
    if dset == "toy":
        assert settings.toy == ToyParams() and settings.validation_tracks == 2
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
            cfg = compose("config", overrides=["dset=toy"])
        assert cfg.dset.data_dir == "data/toy/" and "data_dir" not in cfg
        return
    assert settings.toy is None and settings.validation_tracks == "musdb"
    # the composed config works end to end on a dataset whose validation tracks exist
    small = DataSettings.from_mapping(
        {**OmegaConf.to_container(cfg.dset, resolve=True), "validation_tracks": 1}
    )
    small = replace(small, num_workers=0, n_samples=small.n_samples and 4)
    mixture, references = next(iter(MusdbDataModule(small, ["vocals"]).train_dataloader()))
    assert mixture.shape == (2, 2, 3 * SR) and references.shape == (2, 1, 2, 3 * SR)
