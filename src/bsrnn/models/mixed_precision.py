"""Explicit dtypes for the layers autocast gets wrong on a GPU.

- **Spectral and complex ops** (``torch.stft``/``istft``, ``view_as_complex``, ``complex``,
  ``polar``) always receive fp32 (or fp64): CUDA autocast does not cast their inputs (CPU
  autocast does, which hides the problem on a CPU), ``view_as_complex`` accepts only
  half/float/double and CUDA's ``stft`` has no bf16. :meth:`bsrnn.models.base.StftSpec.stft`
  / ``istft`` cast their inputs to fp32, and the networks' cores multiply complex values in real
  fp32 arithmetic (:func:`bsrnn.spectral.complex_mul`), so no such op sees a half tensor.
- **RNNs** (LSTM/GRU): CUDA autocast's wrapper for cuDNN RNNs
  (``aten/src/ATen/cudnn/AutocastRNN.cpp``, ``_cudnn_rnn_cast_reflatten``, unchanged through
  torch 2.x) casts the input, hidden state and weights to **fp16** whatever the autocast dtype
  is. Under ``bf16-mixed`` (no gradient scaler) that would train the recurrences in fp16
  without loss scaling: gradients can underflow and activations overflow past 65504.
  :func:`rnn_compute_dtype` chooses instead: under bf16 CUDA autocast the RNN runs in **fp32**
  with autocast disabled (cuDNN RNNs use TF32 when ``torch.backends.cudnn.allow_tf32`` is on:
  ``trainer.matmul_precision=high``); under fp16 CUDA autocast (``16-mixed``, with a gradient
  scaler) cuDNN's fp16 is what was asked for and is kept; CPU autocast runs ``lstm``/``gru``
  in its own dtype (bf16, oneDNN), which is kept on a CPU with native bf16; on a CPU without
  it oneDNN has no bf16 LSTM at all ("could not create a primitive descriptor"), so the RNN
  runs in fp32 there (found by trying a tiny bf16 LSTM once); CPU fp16 autocast (no oneDNN
  fp16 LSTM) runs it in fp32 too.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

__all__ = ["rnn_compute_dtype", "run_rnn"]


@functools.cache
def _cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs a bf16 LSTM on this CPU (tried once on a tiny LSTM: what the
    library can do, not what ``/proc/cpuinfo`` claims)."""
    lstm = nn.LSTM(4, 4)
    try:
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
            lstm(torch.zeros(2, 1, 4))
    except RuntimeError:
        return False
    return True


def rnn_compute_dtype(
    device_type: str,
    autocast_enabled: bool,
    autocast_dtype: torch.dtype,
    cpu_native_bf16: bool | None = None,
) -> torch.dtype | None:
    """The dtype an RNN must run in, with autocast disabled, on ``device_type`` under an
    autocast state; None: let autocast decide (it already does what we want).
    ``cpu_native_bf16``: None asks this machine's CPU."""
    if not autocast_enabled:
        return None
    if device_type == "cuda":
        return None if autocast_dtype == torch.float16 else torch.float32
    if device_type == "cpu" and autocast_dtype == torch.bfloat16:
        native = _cpu_has_native_bf16() if cpu_native_bf16 is None else cpu_native_bf16
        return None if native else torch.float32
    if device_type == "cpu" and autocast_dtype == torch.float16:
        return torch.float32  # oneDNN has no fp16 LSTM on CPUs
    return None


def run_rnn(rnn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``rnn(x)[0]`` in the dtype :func:`rnn_compute_dtype` chooses for the current autocast
    state of ``x``'s device. ``x``: the RNN's input ``[batch, L, features]`` or
    ``[L, batch, features]`` as the RNN is built."""
    device_type = x.device.type
    enabled = torch.is_autocast_enabled(device_type)
    dtype = rnn_compute_dtype(
        device_type, enabled, torch.get_autocast_dtype(device_type) if enabled else x.dtype
    )
    if dtype is None:
        return rnn(x)[0]
    with torch.autocast(device_type, enabled=False):
        return rnn(x.to(dtype))[0]
