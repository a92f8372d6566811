"""Typed dataset settings: the keys of ``conf/dset/*.yaml``, each with its one default here.

Entry scripts build them from the composed config::

    settings = DataSettings.from_mapping(OmegaConf.to_container(cfg.dset, resolve=True))

Every value is checked in ``__post_init__``: a bad one raises :class:`~bsrnn.errors.ConfigError`
naming ``dset.<key>`` and what was expected, before anything is read or built.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NoReturn

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
        where = "dset.augment"
        if self.name not in AUGMENT_SETS:
            raise ConfigError(
                f"invalid {where}.name={self.name!r}: expected one of {', '.join(AUGMENT_SETS)} "
                "(augment=<name>)"
            )
        for key in ("loudness", "mixup"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"invalid {where}.{key}={getattr(self, key)!r}: expected true "
                                  "or false")  # fmt: skip
        probs = self.mixup_probs
        if isinstance(probs, str) or not isinstance(probs, Sequence):
            raise ConfigError(f"invalid {where}.mixup_probs={probs!r}: expected a list")
        if not all(_is_number(p) and 0.0 <= p <= 1.0 for p in probs):
            raise ConfigError(
                f"invalid {where}.mixup_probs={list(probs)!r}: expected probabilities in [0, 1]"
            )
        object.__setattr__(self, "mixup_probs", tuple(float(p) for p in probs))
        for low, high in (
            ("loudness_min", "loudness_max"),
            ("mixup_loudness_min", "mixup_loudness_max"),
            ("mp3_compression_on_mixture_bitrate_min", "mp3_compression_on_mixture_bitrate_max"),
        ):
            lo, hi = getattr(self, low), getattr(self, high)
            if not (_is_number(lo) and _is_number(hi) and lo <= hi):
                raise ConfigError(
                    f"invalid {where}.{low}={lo!r} and {high}={hi!r}: expected numbers, low <= high"
                )
        p = self.mp3_compression_on_mixture
        if not (_is_number(p) and 0.0 <= p <= 1.0):
            raise ConfigError(
                f"invalid {where}.mp3_compression_on_mixture={p!r}: expected a probability"
            )
        if self.mp3_compression_on_mixture_backend not in MP3_BACKENDS:
            raise ConfigError(
                f"invalid {where}.mp3_compression_on_mixture_backend="
                f"{self.mp3_compression_on_mixture_backend!r}: expected one of "
                f"{', '.join(MP3_BACKENDS)}"
            )
        object.__setattr__(self, "all", check_effects(self.all, f"{where}.all"))
        if not isinstance(self.stems, Mapping):
            raise ConfigError(f"invalid {where}.stems={self.stems!r}: expected a mapping")
        stems = {}
        for stem, section in self.stems.items():
            stems[stem] = check_effects(section, f"{where}.stems.{stem}")
            check_effects({**self.all, **stems[stem]}, f"{where}.stems.{stem} (with all)")
        object.__setattr__(self, "stems", stems)
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
            _bad("augment", mapping, "a mapping (the augment group: augment=reference|msst|none)")
        reject_unknown_keys(mapping, [f.name for f in fields(cls)], "dset.augment")
        return cls(**mapping)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
        self._check_text("name")
        for key in ("data_dir", "sad_dir"):
            value = getattr(self, key)
            if value is None and key == "sad_dir":
                continue
            if not isinstance(value, (str, os.PathLike)) or not str(value):
                _bad(key, value, "a folder path")
            self._set(key, Path(value))
        self._check_int("sample_rate", minimum=1)
        self._set("sources", self._names("sources", self.sources))
        if not self.sources:
            _bad("sources", self.sources, "at least one source name")
        if len(set(self.sources)) != len(self.sources) or MIXTURE in self.sources:
            _bad("sources", list(self.sources), f"distinct stem names other than {MIXTURE!r}")
        self._check_choice("sampling", SAMPLINGS)
        self._check_float("seq_duration", positive=True)
        self._check_int("samples_per_track", minimum=1, optional=True)
        self._check_int("n_samples", minimum=1, optional=True)
        if self.n_samples is None and self.samples_per_track is None and self.sampling == "random":
            raise ConfigError(
                "dset.n_samples and dset.samples_per_track are both null: expected one of them "
                "(examples per epoch) with sampling=random"
            )
        for key in ("random_track_mix", "peak_normalize"):
            if not isinstance(getattr(self, key), bool):
                _bad(key, getattr(self, key), "true or false")
        self._set("augmentations", self._names("augmentations", self.augmentations))
        unknown = [n for n in self.augmentations if n not in AUGMENTATIONS]
        if unknown:
            _bad("augmentations", list(self.augmentations), f"names among {AUGMENTATIONS}")
        for key in _augmentation_keys():
            self._check_float(key)
        _ = self.augmentation_params  # checks the ranges
        self._set("augment", AugmentSettings.from_mapping(self.augment))
        self._check_validation_tracks()
        self._check_float("eval_seq_duration", positive=True, optional=True)
        self._check_choice("mixture", MIXTURES)
        self._check_int("batch_size", minimum=1)
        self._check_int("num_workers", minimum=0)
        self._check_int("seed")
        activity = ActivityParams() if self.activity is None else self.activity
        self._set("activity", _nested(ActivityParams, activity, "activity"))
        if self.toy is not None:
            self._set("toy", _nested(ToyParams, self.toy, "toy"))

    # ------------------------------------------------------------------ derived values
    @property
    def augmentation_params(self) -> AugmentationParams:
        """The augmentation parameters (checked)."""
        values = {key: getattr(self, key) for key in _augmentation_keys()}
        try:
            return AugmentationParams(**values)
        except ConfigError as err:
            raise ConfigError(f"dset.{err}") from None

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
    def _set(self, key: str, value: Any) -> None:
        object.__setattr__(self, key, value)

    def _check_text(self, key: str) -> None:
        value = getattr(self, key)
        if not isinstance(value, str) or not value:
            _bad(key, value, "a non-empty string")

    def _check_choice(self, key: str, choices: Sequence[str]) -> None:
        value = getattr(self, key)
        if value not in choices:
            _bad(key, value, f"one of {', '.join(choices)}")

    def _check_int(self, key: str, minimum: int | None = None, optional: bool = False) -> None:
        value = getattr(self, key)
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            _bad(key, value, "an integer" + (" or null" if optional else ""))
        if minimum is not None and value < minimum:
            _bad(key, value, f"an integer >= {minimum}" + (" or null" if optional else ""))

    def _check_float(self, key: str, positive: bool = False, optional: bool = False) -> None:
        value = getattr(self, key)
        if value is None and optional:
            return
        what = ("a positive number" if positive else "a finite number") + (
            " or null" if optional else ""
        )
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _bad(key, value, what)
        if not math.isfinite(value) or (positive and value <= 0):
            _bad(key, value, what)
        self._set(key, float(value))

    @staticmethod
    def _names(key: str, value: Any) -> tuple[str, ...]:
        if isinstance(value, str) or not isinstance(value, Sequence):
            _bad(key, value, "a list of names")
        if not all(isinstance(v, str) and v for v in value):
            _bad(key, list(value), "a list of non-empty strings")
        return tuple(value)

    def _check_validation_tracks(self) -> None:
        value = self.validation_tracks
        what = f"{MUSDB_VALIDATION!r}, a list of track names or a count"
        if isinstance(value, str):
            if value != MUSDB_VALIDATION:
                _bad("validation_tracks", value, what + f" (a single name: [{value!r}])")
        elif isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                _bad("validation_tracks", value, what + " (a count >= 0)")
        elif isinstance(value, Sequence):
            self._set("validation_tracks", self._names("validation_tracks", value))
        else:
            _bad("validation_tracks", value, what)


def _bad(key: str, value: Any, expected: str) -> NoReturn:
    raise ConfigError(f"invalid dset.{key}={value!r}: expected {expected}")


def _augmentation_keys() -> tuple[str, ...]:
    return tuple(f.name for f in fields(AugmentationParams))


def _nested(cls: type, value: Any, key: str) -> Any:
    """``value`` as a ``cls`` parameter dataclass (a mapping is converted, naming unknown keys
    and bad values as ``dset.<key>.<name>``)."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        _bad(key, value, f"a mapping of {cls.__name__} keys")
    reject_unknown_keys(value, [f.name for f in fields(cls)], f"dset.{key}")
    try:
        return cls(**value)
    except ConfigError as err:
        raise ConfigError(f"dset.{err}") from None
    except TypeError as err:  # a value of the wrong type compared in __post_init__
        raise ConfigError(f"invalid dset.{key}={dict(value)!r}: {err}") from None
