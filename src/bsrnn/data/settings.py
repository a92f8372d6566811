"""Typed dataset settings: the keys of ``conf/dset/*.yaml``, each with its one default here.

Entry scripts build them from the composed config::

    settings = DataSettings.from_mapping(OmegaConf.to_container(cfg.dset, resolve=True))

Every value is checked in ``__post_init__``: a bad one raises :class:`~bsrnn.errors.ConfigError`
naming ``dset.<key>`` and what was expected, before anything is read or built.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import bsrnn.checks as checks
from bsrnn.data.activity import ActivityParams
from bsrnn.data.augment import (
    AUGMENT_SETS,
    AUGMENTATIONS,
    AugmentationParams,
    Augmenter,
    SourceAugmenter,
)
from bsrnn.data.msst_augment import (
    EXTRA_HINT,
    MP3_BACKENDS,
    MsstAugmenter,
    check_effects,
    missing_modules,
    modules_needed,
    msst_defaults,
)
from bsrnn.data.toy import ToyParams
from bsrnn.data.tracks import (
    MIXTURE,
    MIXTURES,
    MUSDB_STEMS,
    MUSDB_VALIDATION,
    Track,
    discover_tracks,
)
from bsrnn.errors import ConfigError, reject_unknown_keys

SAMPLINGS: tuple[str, ...] = ("random", "activity")
# The dataset conf/config.yaml selects by default; `python prep_dataset.py` prepares it.
DEFAULT_DATASET = "musdb18hq_sad"

_AUG = AugmentationParams()  # the augmentation defaults live in AugmentationParams
_MSST_ALL, _MSST_STEMS = msst_defaults()  # MSST's documented values live in msst_augment


@dataclass(frozen=True)
class AugmentSettings:
    """Which augmentations training examples go through (config ``dset.augment``, chosen with
    the ``augment`` group: ``augment=reference|msst|none``).

    Attributes:
        name: ``reference``: the dataset's own list ``dset.augmentations`` (the reference's
            behaviour); ``msst``: MSST's set configured by the keys below (``dset.augmentations``
            is then not applied); ``none``: no augmentation (crops stay random).
        loudness, loudness_min, loudness_max: a gain per stem in that range (MSST).
        mixup, mixup_probs, mixup_loudness_min, mixup_loudness_max: each probability adds a crop
            of the same stem from a random excerpt; the crops are scaled by gains in the range
            and averaged (MSST).
        mp3_compression_on_mixture (probability), ..._bitrate_min/max, ..._backend: MP3
            compression of the mixture alone (MSST).
        all: per-source effects applied to every source (see :mod:`bsrnn.data.msst_augment`).
        stems: per-stem sections (stem name -> keys overriding ``all`` for that stem).
    """

    name: str = "reference"
    loudness: bool = True
    loudness_min: float = 0.5
    loudness_max: float = 1.5
    mixup: bool = True
    mixup_probs: tuple[float, ...] = (0.2, 0.02)
    mixup_loudness_min: float = 0.5
    mixup_loudness_max: float = 1.5
    mp3_compression_on_mixture: float = 0.01
    mp3_compression_on_mixture_bitrate_min: int = 32
    mp3_compression_on_mixture_bitrate_max: int = 320
    mp3_compression_on_mixture_backend: str = "fast-mp3-augment"
    # dicts (for Hydra's schema): left out of the hash, compared by ==
    all: dict[str, Any] = field(default_factory=lambda: dict(_MSST_ALL), hash=False)
    stems: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {k: dict(v) for k, v in _MSST_STEMS.items()},
        hash=False,
    )

    def __post_init__(self) -> None:
        where, set_ = "dset.augment", functools.partial(object.__setattr__, self)
        if self.name not in AUGMENT_SETS:
            checks.fail(
                f"{where}.name", self.name, f"one of {', '.join(AUGMENT_SETS)} (augment=<name>)"
            )
        for key in ("loudness", "mixup"):
            checks.boolean(f"{where}.{key}", getattr(self, key))
        probs = checks.numbers(
            f"{where}.mixup_probs",
            self.mixup_probs,
            minimum=0.0,
            maximum=1.0,
            expected="a list of probabilities in [0, 1]",
        )
        set_("mixup_probs", probs)
        for low, high in (
            ("loudness_min", "loudness_max"),
            ("mixup_loudness_min", "mixup_loudness_max"),
        ):
            set_(low, checks.number(f"{where}.{low}", getattr(self, low)))
            set_(high, checks.number(f"{where}.{high}", getattr(self, high)))
            checks.ordered(where, low, getattr(self, low), high, getattr(self, high))
        bitrate = "mp3_compression_on_mixture_bitrate"
        for key in (f"{bitrate}_min", f"{bitrate}_max"):
            checks.integer(f"{where}.{key}", getattr(self, key), minimum=1)
        checks.ordered(
            where,
            f"{bitrate}_min",
            getattr(self, f"{bitrate}_min"),
            f"{bitrate}_max",
            getattr(self, f"{bitrate}_max"),
        )
        p = checks.probability(
            f"{where}.mp3_compression_on_mixture", self.mp3_compression_on_mixture
        )
        set_("mp3_compression_on_mixture", p)
        checks.choice(
            f"{where}.mp3_compression_on_mixture_backend",
            self.mp3_compression_on_mixture_backend,
            MP3_BACKENDS,
        )
        set_("all", check_effects(self.all, f"{where}.all"))
        if not isinstance(self.stems, Mapping):
            checks.fail(f"{where}.stems", self.stems, "a mapping")
        stems = {}
        for stem, section in self.stems.items():
            stems[stem] = check_effects(section, f"{where}.stems.{stem}")
            check_effects({**self.all, **stems[stem]}, f"{where}.stems.{stem} (with all)")
        set_("stems", stems)
        if self.name == "msst":
            needed = modules_needed([self.all, *stems.values()], p)
            missing = missing_modules(needed)
            if missing:
                raise ConfigError(
                    f"augment=msst needs the optional extra 'augment' ({EXTRA_HINT}): "
                    f"{', '.join(missing)} not installed"
                )

    @classmethod
    def from_mapping(cls, mapping: Any) -> AugmentSettings:
        """The settings of the plain dict ``cfg.dset.augment`` (unknown keys named)."""
        if isinstance(mapping, cls):
            return mapping
        if not isinstance(mapping, Mapping):
            checks.fail(
                "dset.augment",
                mapping,
                "a mapping (the augment group: augment=reference|msst|none)",
            )
        reject_unknown_keys(mapping, [f.name for f in fields(cls)], "dset.augment")
        return cls(**mapping)


@dataclass(frozen=True)
class DataSettings:
    """The dataset configuration (``cfg.dset``), checked.

    Attributes:
        name: the config's name (``dset=<name>``), used in messages and in the prep command.
        data_dir: dataset root with ``train/`` and ``test/`` in the MUSDB18-HQ layout.
        sad_dir: folder of the activity index (None: ``<data_dir>/sad``).
        sample_rate: the sample rate the audio must have.
        sources: the stems of a track; a training mixture is the sum of all of them.
        sampling: ``"random"`` (chunks of whole training tracks) or ``"activity"`` (chunks of
            the active segments in the activity index, made by ``prep_dataset.py``).
        seq_duration: seconds per training example.
        samples_per_track: examples per training track and epoch (used when ``n_samples`` is
            None).
        n_samples: examples per epoch (None: ``samples_per_track`` x tracks; with both None and
            ``sampling="activity"``, the size of the first target's index).
        random_track_mix: each source from its own random track / segment.
        augmentations: names among :data:`~bsrnn.data.augment.AUGMENTATIONS` (``randomcrop`` is
            always on and accepted for compatibility with the reference's lists).
        rescale_min, rescale_max: linear gain range of ``rescale``.
        rescale_db_min, rescale_db_max: gain range of ``rescale_db`` in dB.
        p_channelswap, p_silentsource, p_silenttarget: probabilities of those augmentations.
        peak_normalize: divide each example by its mixture's peak.
        augment: the augmentation set (:class:`AugmentSettings`; ``augment=reference`` applies
            ``augmentations`` above, ``augment=msst`` MSST's set, ``augment=none`` nothing).
        validation_tracks: ``"musdb"`` (musdb's 14 validation tracks,
            :data:`~bsrnn.data.tracks.MUSDB_VALIDATION_TRACKS`), a list of track names, or a
            count (the first tracks of ``train/`` in sorted order); taken out of ``train/``.
        eval_seq_duration: crop validation tracks to this many seconds (None: full tracks).
        mixture: the validation/test mixture: ``"stems"`` (the sum of ``sources``, as the
            reference separates) or ``"file"`` (``mixture.wav``).
        batch_size: training examples per batch and device.
        num_workers: DataLoader worker processes.
        seed: seed of the random draws.
        activity: parameters of the source activity detector.
        toy: parameters of the synthetic stand-in when ``data_dir`` is one (``prep_dataset.py``
            then generates it if missing), else None.
    """

    name: str = "musdb18hq"
    data_dir: Path = Path("data/musdb18hq")
    sad_dir: Path | None = None
    sample_rate: int = 44100
    sources: tuple[str, ...] = MUSDB_STEMS
    sampling: str = "random"
    seq_duration: float = 3.0
    samples_per_track: int | None = 256
    n_samples: int | None = None
    random_track_mix: bool = True
    augmentations: tuple[str, ...] = ("randomcrop", "rescale", "channelswap")
    rescale_min: float = _AUG.rescale_min
    rescale_max: float = _AUG.rescale_max
    rescale_db_min: float = _AUG.rescale_db_min
    rescale_db_max: float = _AUG.rescale_db_max
    p_channelswap: float = _AUG.p_channelswap
    p_silentsource: float = _AUG.p_silentsource
    p_silenttarget: float = _AUG.p_silenttarget
    peak_normalize: bool = False
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    validation_tracks: str | tuple[str, ...] | int = MUSDB_VALIDATION
    eval_seq_duration: float | None = None
    mixture: str = "stems"
    batch_size: int = 2
    num_workers: int = 4
    seed: int = 42
    activity: ActivityParams = field(default_factory=ActivityParams)
    toy: ToyParams | None = None

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> DataSettings:
        """Build the settings from the plain dict of ``cfg.dset``; nested ``activity`` and
        ``toy`` mappings become :class:`ActivityParams` / :class:`ToyParams`. Unknown keys
        raise :class:`ConfigError` naming them and listing the valid ones."""
        if not isinstance(mapping, Mapping):
            raise ConfigError(
                f"dset: expected a mapping of dataset settings, got {type(mapping).__name__}"
            )
        reject_unknown_keys(mapping, [f.name for f in fields(cls)], "dset")
        return cls(**mapping)

    def __post_init__(self) -> None:
        set_ = functools.partial(object.__setattr__, self)
        checks.text("dset.name", self.name)
        set_(
            "data_dir", Path(checks.path("dset.data_dir", self.data_dir, expected="a folder path"))
        )
        if (
            checks.path("dset.sad_dir", self.sad_dir, optional=True, expected="a folder path")
            is not None
        ):
            set_("sad_dir", Path(self.sad_dir))
        checks.integer("dset.sample_rate", self.sample_rate, minimum=1)
        sources = checks.names("dset.sources", self.sources, expected="a list of source names")
        if not sources or len(set(sources)) != len(sources) or MIXTURE in sources:
            checks.fail(
                "dset.sources",
                list(sources),
                f"distinct stem names other than {MIXTURE!r}, at least one",
            )
        set_("sources", sources)
        checks.choice("dset.sampling", self.sampling, SAMPLINGS)
        set_("seq_duration", checks.number("dset.seq_duration", self.seq_duration, above=0))
        for key in ("samples_per_track", "n_samples"):
            checks.integer(f"dset.{key}", getattr(self, key), minimum=1, optional=True)
        if self.n_samples is None and self.samples_per_track is None and self.sampling == "random":
            raise ConfigError(
                "dset.n_samples and dset.samples_per_track are both null: expected one of them "
                "(examples per epoch) with sampling=random"
            )
        for key in ("random_track_mix", "peak_normalize"):
            checks.boolean(f"dset.{key}", getattr(self, key))
        augmentations = checks.names("dset.augmentations", self.augmentations)
        if any(n not in AUGMENTATIONS for n in augmentations):
            checks.fail("dset.augmentations", list(augmentations), f"names among {AUGMENTATIONS}")
        set_("augmentations", augmentations)
        _ = self.augmentation_params  # checks the augmentation keys
        for key in _augmentation_keys():
            set_(key, float(getattr(self, key)))
        set_("augment", AugmentSettings.from_mapping(self.augment))
        self._check_validation_tracks()
        duration = checks.number(
            "dset.eval_seq_duration", self.eval_seq_duration, above=0, optional=True
        )
        set_("eval_seq_duration", duration)
        checks.choice("dset.mixture", self.mixture, MIXTURES)
        checks.integer("dset.batch_size", self.batch_size, minimum=1)
        checks.integer("dset.num_workers", self.num_workers, minimum=0)
        checks.integer("dset.seed", self.seed)
        activity = ActivityParams() if self.activity is None else self.activity
        set_("activity", _nested(ActivityParams, activity, "activity"))
        if self.toy is not None:
            set_("toy", _nested(ToyParams, self.toy, "toy"))

    # ------------------------------------------------------------------ derived values
    @property
    def augmentation_params(self) -> AugmentationParams:
        """The augmentation parameters (checked)."""
        return AugmentationParams(**{key: getattr(self, key) for key in _augmentation_keys()})

    def augmenter(self) -> Augmenter:
        """The configured augmentations: the dataset's list (``augment=reference``), MSST's
        set (``augment=msst``) or none."""
        if self.augment.name == "msst":
            return MsstAugmenter(self.augment, self.sample_rate)
        if self.augment.name == "none":
            return Augmenter()
        return SourceAugmenter(self.augmentations, self.augmentation_params)

    @property
    def sad_path(self) -> Path:
        """The activity index folder: ``sad_dir``, or ``<data_dir>/sad``."""
        return self.sad_dir if self.sad_dir is not None else self.data_dir / "sad"

    @property
    def seq_len(self) -> int:
        """Samples per training example."""
        return int(round(self.seq_duration * self.sample_rate))

    @property
    def eval_seq_len(self) -> int | None:
        """Samples kept of each validation track (None: all)."""
        if self.eval_seq_duration is None:
            return None
        return int(round(self.eval_seq_duration * self.sample_rate))

    @property
    def prep_command(self) -> str:
        """The command that prepares this dataset (generates the stand-in, builds the index)."""
        if self.name == DEFAULT_DATASET:
            return "python prep_dataset.py"
        return f"python prep_dataset.py dset={self.name}"

    def tracks(self, split: str) -> list[Track]:
        """The checked tracks of ``split`` (``train``, ``valid`` or ``test``)."""
        return discover_tracks(
            self.data_dir, split, self.sources, self.validation_tracks, self.sample_rate
        )

    # ------------------------------------------------------------------ checks
    def _check_validation_tracks(self) -> None:
        key, value = "dset.validation_tracks", self.validation_tracks
        what = f"{MUSDB_VALIDATION!r}, a list of track names or a count"
        if isinstance(value, str):
            if value != MUSDB_VALIDATION:
                checks.fail(key, value, what + f" (a single name: [{value!r}])")
        elif isinstance(value, int) and not isinstance(value, bool):
            checks.integer(key, value, minimum=0, expected=what + " (a count >= 0)")
        elif isinstance(value, Sequence):
            object.__setattr__(self, "validation_tracks", checks.names(key, value))
        else:
            checks.fail(key, value, what)


def _augmentation_keys() -> tuple[str, ...]:
    return tuple(f.name for f in fields(AugmentationParams))


def _nested(cls: type, value: Any, key: str) -> Any:
    """``value`` as a ``cls`` parameter dataclass (a mapping is converted, naming unknown keys
    and bad values as ``dset.<key>.<name>``)."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        checks.fail(f"dset.{key}", value, f"a mapping of {cls.__name__} keys")
    reject_unknown_keys(value, [f.name for f in fields(cls)], f"dset.{key}")
    return cls(**value)
