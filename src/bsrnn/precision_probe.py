"""``precision=auto`` for separation: time the networks in fp32 and bf16 on a short input and
keep the faster (:func:`bsrnn.runtime.auto_precision` decides, and caches the choice per
device, torch version, threads and :func:`model_digest`).

The :class:`~bsrnn.separator.Separator` runs the probe on its first use, not when it is built
(building one writes nothing to disk).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence

import torch

from bsrnn.models import SeparationModel, arch_name
from bsrnn.runtime import auto_precision, time_forward

#: Seconds of audio the ``precision=auto`` probe times one forward pass on.
PROBE_SECONDS = 1.0


def model_digest(models: Sequence[SeparationModel], shape: Sequence[int] = ()) -> str:
    """A short digest of the models' architectures and configs (and an input shape): what a
    precision probe measured."""
    record = [[arch_name(m), m.config.to_dict()] for m in models]
    text = json.dumps([record, list(shape)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def probe_precision(
    models: Sequence[SeparationModel],
    device: torch.device,
    run: Callable[[torch.Tensor, str], torch.Tensor],
    min_samples: int = 1,
) -> str:
    """``"bf16"`` or ``"fp32"`` for ``models`` on ``device``: ``run(example [1, C, n],
    precision)`` (one pass of the networks) timed on :data:`PROBE_SECONDS` of seeded noise
    in each precision (see :func:`bsrnn.runtime.auto_precision`)."""
    channels = models[0].audio_channels or 2
    rate = int(models[0].sample_rate)
    n = max(int(PROBE_SECONDS * rate), int(min_samples))
    generator = torch.Generator().manual_seed(0)
    example = (0.1 * torch.randn(1, channels, n, generator=generator)).to(device)
    digest = model_digest(models, example.shape)

    def timer(precision: str) -> float:
        return time_forward(lambda: run(example, precision), device, precision)

    return auto_precision(device, digest, timer)
