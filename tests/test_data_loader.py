"""Training examples, loaders and the DataModule: batches, determinism, workers, configs."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from bsrnn.audio import read_audio
from bsrnn.data import (
    DatasetError,
    EpochSampler,
    MusdbDataModule,
    Segment,
    SourceAugmenter,
    ToyParams,
    TrainingExamples,
    discover_tracks,
    generate_toy_dataset,
)

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["vocals", "bass", "drums", "other"]
SR = 44100


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 train songs (1 for validation) and 1 test song of 8 s, with the activity index."""
    root = tmp_path_factory.mktemp("toy")
    params = ToyParams(n_train=4, n_test=1, min_duration=8.0, max_duration=8.0, seed=3)
    generate_toy_dataset(root, params, progress=False)
    MusdbDataModule(data_dir=str(root), validation_tracks=1, num_workers=0).prepare_dataset(
        progress=False
    )
    return root


def make_dm(root: Path, **kwargs) -> MusdbDataModule:
    args = dict(
        data_dir=str(root), validation_tracks=1, samples_per_track=4, num_workers=0, batch_size=2
    )
    args.update(kwargs)
    return MusdbDataModule(**args)


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
    dm = make_dm(toy_root, **(SAD if kind == "activity" else {}))
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


def test_sources_follow_config_order_and_fast_tr_is_fixed(toy_root: Path) -> None:
    order = ["drums", "vocals", "other", "bass"]
    dm = make_dm(toy_root, sources=order, target="vocals", fast_tr=True)
    dm.setup("fit")
    first, second = batches(dm.train_dataloader()), batches(dm.train_dataloader(), epoch=5)
    for (m1, s1), (m2, s2) in zip(first, second):
        assert torch.equal(m1, m2) and torch.equal(s1, s2)
    # example 0: no augmentation, no mixing: the centred 3 s of the first training track
    track = discover_tracks(toy_root, "train", validation_tracks=1)[0]
    start = (track.frames - 3 * SR) // 2
    for row, name in enumerate(order):
        expected, _ = read_audio(track.stem_path(name), start, start + 3 * SR)
        np.testing.assert_array_equal(first[0][1][0, row].numpy(), expected)
    # validation overfits the same examples, one per batch
    val = list(dm.val_dataloader())
    assert len(val) == 2 and torch.equal(val[0][1][0], first[0][1][0])


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
    mixed = TrainingExamples(excerpts, SOURCES, "vocals", SR // 10, 20, aug, random_track_mix=True)
    single = TrainingExamples(
        excerpts, SOURCES, "vocals", SR // 10, 20, aug, random_track_mix=False
    )
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
    data = TrainingExamples(excerpts, SOURCES, "vocals", SR // 4, 30, SourceAugmenter(), False)
    for i in range(30):  # half of the draws land on the silent track: all are redrawn
        assert data[i][0].abs().max() > 0.01
    silent_only = {s: [e for e in excerpts[s] if e.track.name == "silent"] for s in SOURCES}
    data = TrainingExamples(silent_only, SOURCES, "vocals", SR // 4, 3, SourceAugmenter())
    with pytest.raises(DatasetError, match="no non-silent mixture"):
        data[0]


def test_validation_and_test_loaders(toy_root: Path) -> None:
    dm = make_dm(toy_root)
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
    cropped = make_dm(toy_root, eval_seq_duration=2.0)
    cropped.setup("validate")
    mixture, sources = next(iter(cropped.val_dataloader()))
    assert mixture.shape == (1, 2, 2 * SR) and sources.shape == (1, 4, 2, 2 * SR)


def test_constructor_checks(toy_root: Path) -> None:
    with pytest.raises(ValueError, match="target 'piano' is not among the sources"):
        make_dm(toy_root, target="piano")
    with pytest.raises(ValueError, match="unknown sampling 'sad'"):
        make_dm(toy_root, sampling="sad")
    with pytest.raises(ValueError, match="unknown key.*win_size.*valid keys: win_duration"):
        make_dm(toy_root, activity={"win_size": 6})
    dm = make_dm(toy_root, data_dir=str(toy_root / "nowhere"))
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
def test_configs_instantiate(toy_root: Path, dset: str) -> None:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("config", overrides=[f"dset={dset}", f"data_dir={toy_root}"])
    dm = instantiate(cfg.dset, target=cfg.src_mod.target, fast_tr=False)
    assert isinstance(dm, MusdbDataModule)
    assert dm.data_dir == toy_root and dm.sources == SOURCES and dm.target == "vocals"
    assert dm.seq_len == 3 * SR and dm.activity.win_duration == 6.0
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
    got = (dm.sampling, dm.augmenter.names, dm.peak_normalize, dm.samples_per_track, dm.n_samples)
    assert got == expected
    assert dm.augmenter.params.rescale_min == 0.25 and dm.augmenter.params.p_silentsource == 0.1
    if dset == "toy":
        assert dm.toy == ToyParams() and dm.validation_tracks == 2
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
            cfg = compose("config", overrides=["dset=toy"])
        assert cfg.dset.data_dir == cfg.data_dir == "data/toy/"
