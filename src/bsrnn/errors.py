"""The project's errors: one root, :class:`BsrnnError`, and the domain errors under it.

Entry scripts (``bsrnn.cli.run_entry``) print a domain error as one line and exit 1; any other
exception is a bug and keeps its traceback. Domain errors also derive from ``ValueError`` (they
are all "bad input"), so library callers may catch either.
"""

from __future__ import annotations


class BsrnnError(ValueError):
    """Root of every error that describes bad input rather than a bug."""


class ConfigError(BsrnnError):
    """An invalid option or configuration, found before anything is built or run."""


class CheckpointError(BsrnnError):
    """A checkpoint that is missing, unsafe, or not one this project can rebuild."""


class AudioError(BsrnnError):
    """An audio file that cannot be read (or holds NaN/inf), or a request outside the file."""


class DatasetError(BsrnnError):
    """A dataset folder, track, stem or index that is missing or invalid."""


class NonFiniteLossError(BsrnnError):
    """The training loss became NaN or infinite; the message names the epoch and step."""


class SilentSourceError(BsrnnError):
    """A whole reference or estimated source is silent: museval's bss_eval refuses the track."""


def reject_unknown_keys(keys: object, valid: list[str], where: str) -> None:
    """Raise a ConfigError naming every key of ``keys`` that is not in ``valid`` (as
    ``<where>.<key>``) and listing the valid ones."""
    unknown = sorted(str(k) for k in keys if k not in valid)  # type: ignore[attr-defined]
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}; valid keys of "
            f"{where}: {', '.join(valid)}"
        )
