"""The Band-Split RNN network (Luo & Yu, 2022), parameter for parameter the reference's.

Data flow (B = batch, C = channels, B' = B*C since every channel is its own item, F = 1025
bins, T = frames, K = bands, N = feature_dim):

    mixture [B, C, samples]
      -> STFT                                    [B', F, T] complex
      -> band split (norm + linear per band)     [T, B', K, N]
      -> L blocks: time layer, band layer (+ attention), each residual
      -> mask decoder per band (MLP + GLU)       complex mask [B', F, T]
      -> mask * mixture STFT -> iSTFT            waveform [B, 1, C, samples]

Inside the network features are kept "frames first", ``[T, B', K, N]``, so that both sequence
layers see their input without a copy: the time RNN reads ``[T, B'*K, N]`` (sequence first)
and the band RNN reads ``[T*B', K, N]`` (batch first). Per-band weights are stacked per run of
equal-width bands, so a handful of batched matmuls replace the reference's loop over 30-55 bands
(``tests/test_model.py`` checks the two compute the same thing).

Only torch is needed here: no Lightning, Hydra or OmegaConf.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bsrnn.bands import TARGETS, band_widths, group_equal_widths
from bsrnn.spectral import ISTFT, STFT

LAYER_TYPES = ("lstm", "gru", "conv")

#: Sequences per call of the band RNN on CPU (see ResidualSequenceLayer.forward).
CPU_RNN_CHUNK = 128


class ModelOutput(dict):
    """The network's output: ``waveforms`` [B, 1, C, samples] and complex ``stfts``
    [B, 1, C, F, frames]; reachable as keys or attributes."""

    @property
    def waveforms(self) -> torch.Tensor:
        return self["waveforms"]

    @property
    def stfts(self) -> torch.Tensor:
        return self["stfts"]


def _uniform_(t: torch.Tensor, fan_in: int) -> torch.Tensor:
    """PyTorch's default init for Linear/Conv weights and biases: U(-1/sqrt(fan_in), +)."""
    bound = 1.0 / math.sqrt(fan_in)
    return nn.init.uniform_(t, -bound, bound)


def _affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(bias, x, weight)


# --------------------------------------------------------------------------------------------
# Band split
# --------------------------------------------------------------------------------------------
class BandGroupSplit(nn.Module):
    """``count`` bands of ``width`` bins each: GroupNorm(1, 2*width) then a linear map to N.

    ``[B', count, width, T, 2] (real, imag) -> [count, T*B', N]``.
    """

    def __init__(self, count: int, width: int, feature_dim: int, eps: float) -> None:
        super().__init__()
        self.count, self.width, self.eps = count, width, eps
        # features are ordered (real bins, imag bins), as in the reference
        self.norm_weight = nn.Parameter(torch.ones(count, 1, 2 * width))
        self.norm_bias = nn.Parameter(torch.zeros(count, 1, 2 * width))
        self.weight = nn.Parameter(_uniform_(torch.empty(count, 2 * width, feature_dim), 2 * width))
        self.bias = nn.Parameter(_uniform_(torch.empty(count, 1, feature_dim), 2 * width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, k, w, t, _ = x.shape
        var, mean = torch.var_mean(x, dim=(2, 3, 4), correction=0, keepdim=True)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        x = x.permute(1, 3, 0, 4, 2).reshape(k, t * b, 2 * w)  # [k, T*B', 2w]
        x = _affine(x, self.norm_weight, self.norm_bias)
        return torch.baddbmm(self.bias, x, self.weight)  # [k, T*B', N]


class BandSplit(nn.Module):
    """``[B', F, T] complex -> [T, B', K, N]``."""

    def __init__(self, widths: Sequence[int], feature_dim: int, eps: float) -> None:
        super().__init__()
        self.groups = nn.ModuleList(
            BandGroupSplit(count, width, feature_dim, eps)
            for count, width in group_equal_widths(widths)
        )

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        b, _, t = spec.shape
        ri = torch.view_as_real(spec)  # [B', F, T, 2]
        feats, f0 = [], 0
        for g in self.groups:
            f1 = f0 + g.count * g.width
            feats.append(g(ri[:, f0:f1].reshape(b, g.count, g.width, t, 2)))
            f0 = f1
        out = torch.cat(feats, 0)  # [K, T*B', N]
        return out.transpose(0, 1).reshape(t, b, -1, out.shape[-1])


# --------------------------------------------------------------------------------------------
# Residual sequence layers (over time or over bands) and attention
# --------------------------------------------------------------------------------------------
class ResidualSequenceLayer(nn.Module):
    """GroupNorm(1, N) -> BLSTM/BGRU (hidden 2N) or Conv1d(N, 4N, 3)+ReLU -> Linear(4N, N) -> +x.

    ``axis="time"`` models each band's sequence of frames, ``axis="band"`` each frame's
    sequence of bands. ``[T, B', K, N] -> [T, B', K, N]``.
    """

    def __init__(self, feature_dim: int, layer_type: str, axis: str, eps: float) -> None:
        super().__init__()
        n = feature_dim
        self.axis, self.layer_type, self.eps = axis, layer_type, eps
        self.norm = nn.GroupNorm(1, n, eps)  # holds the affine parameters; stats computed below
        if layer_type in ("lstm", "gru"):
            rnn_cls = nn.LSTM if layer_type == "lstm" else nn.GRU
            self.rnn = rnn_cls(n, 2 * n, 1, batch_first=(axis == "band"), bidirectional=True)
        else:
            self.conv = nn.Conv1d(n, 4 * n, kernel_size=3, padding=1)
        self.proj = nn.Linear(4 * n, n)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        t, b, k, n = x.shape
        if self.axis == "time":  # statistics per (item, band) over (frames, features)
            var, mean = torch.var_mean(x, dim=(0, 3), correction=0, keepdim=True)
            x = (x - mean) * torch.rsqrt(var + self.eps)
        else:  # statistics per (frame, item) over (bands, features)
            x = F.layer_norm(x, (k, n), eps=self.eps)
        return _affine(x, self.norm.weight, self.norm.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, k, n = x.shape
        y = self._normalize(x)
        if self.axis == "time":
            y = y.reshape(t, b * k, n)  # sequence first
            if self.layer_type == "conv":
                y = F.relu(self.conv(y.permute(1, 2, 0))).permute(2, 0, 1)
            else:
                y, _ = self.rnn(y)
        else:
            y = y.reshape(t * b, k, n)  # batch first
            if self.layer_type == "conv":
                y = F.relu(self.conv(y.transpose(1, 2))).transpose(1, 2)
            elif y.device.type == "cpu" and y.shape[0] > CPU_RNN_CHUNK:
                # oneDNN's CPU RNN runs much faster on a few hundred sequences at a time than on
                # thousands (cache locality); results are identical
                y = torch.cat([self.rnn(part)[0] for part in y.split(CPU_RNN_CHUNK)])
            else:
                y, _ = self.rnn(y)
        return x + self.proj(y).view(t, b, k, n)


class _HeadProjection(nn.Module):
    """Per head: Linear(N, D) -> PReLU -> layer norm over (bands, D).

    ``[T, B', K, N] -> [T, B', heads, K, D]``.
    """

    def __init__(self, feature_dim: int, heads: int, dim: int, n_bands: int, eps: float) -> None:
        super().__init__()
        self.heads, self.dim, self.eps = heads, dim, eps
        self.linear = nn.Linear(feature_dim, heads * dim)
        self.prelu = nn.Parameter(torch.full((heads, 1, 1), 0.25))
        self.norm_weight = nn.Parameter(torch.ones(heads, n_bands, dim))
        self.norm_bias = nn.Parameter(torch.zeros(heads, n_bands, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, k, _ = x.shape
        y = self.linear(x).view(t, b, k, self.heads, self.dim).transpose(2, 3)
        y = torch.where(y >= 0, y, self.prelu * y)
        y = F.layer_norm(y, (k, self.dim), eps=self.eps)
        return _affine(y, self.norm_weight, self.norm_bias)


class BandAttention(nn.Module):
    """TFGridNet-style self-attention over frames, features flattened across bands; residual.

    ``[T, B', K, N] -> [T, B', K, N]``.
    """

    def __init__(self, feature_dim: int, n_bands: int, heads: int, enc_dim: int, eps: float):
        super().__init__()
        if feature_dim % heads:
            raise ValueError(
                f"feature_dim ({feature_dim}) must be divisible by n_att_head ({heads})"
            )
        self.heads = heads
        self.query = _HeadProjection(feature_dim, heads, enc_dim, n_bands, eps)
        self.key = _HeadProjection(feature_dim, heads, enc_dim, n_bands, eps)
        self.value = _HeadProjection(feature_dim, heads, feature_dim // heads, n_bands, eps)
        self.out = _HeadProjection(feature_dim, 1, feature_dim, n_bands, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, k, n = x.shape

        def per_head(y: torch.Tensor) -> torch.Tensor:  # [T, B', h, K, D] -> [B', h, T, K*D]
            return y.permute(1, 2, 0, 3, 4).reshape(b, self.heads, t, -1)

        q, kk, v = per_head(self.query(x)), per_head(self.key(x)), per_head(self.value(x))
        y = F.scaled_dot_product_attention(q, kk, v)  # [B', h, T, K*N/h], scale 1/sqrt(K*E)
        y = y.view(b, self.heads, t, k, n // self.heads).permute(2, 0, 3, 1, 4).reshape(t, b, k, n)
        return x + self.out(y).squeeze(2)


class BSBlock(nn.Module):
    """One separator block: time layer, band layer, optional attention."""

    def __init__(
        self,
        feature_dim: int,
        n_bands: int,
        time_layer: str,
        band_layer: str,
        n_att_head: int,
        attn_enc_dim: int,
        eps: float,
    ) -> None:
        super().__init__()
        self.time = ResidualSequenceLayer(feature_dim, time_layer, "time", eps)
        self.band = ResidualSequenceLayer(feature_dim, band_layer, "band", eps)
        self.attention = (
            BandAttention(feature_dim, n_bands, n_att_head, attn_enc_dim, eps)
            if n_att_head > 0
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.band(self.time(x))
        return x if self.attention is None else self.attention(x)


# --------------------------------------------------------------------------------------------
# Mask decoder
# --------------------------------------------------------------------------------------------
class MaskDecoder(nn.Module):
    """Per band: GroupNorm(1, N) -> N->4N, tanh -> 4N->4N, tanh -> 4N->4*width -> GLU.

    ``[T, B', K, N] -> complex mask [B', F, T]``. The first two layers have the same shape
    for every band and run as one batched matmul; the last runs once per equal-width group.
    """

    def __init__(self, widths: Sequence[int], feature_dim: int, eps: float) -> None:
        super().__init__()
        n, k = feature_dim, len(widths)
        self.eps = eps
        self.norm_weight = nn.Parameter(torch.ones(k, 1, 1, n))
        self.norm_bias = nn.Parameter(torch.zeros(k, 1, 1, n))
        self.fc1_weight = nn.Parameter(_uniform_(torch.empty(k, n, 4 * n), n))
        self.fc1_bias = nn.Parameter(_uniform_(torch.empty(k, 1, 4 * n), n))
        self.fc2_weight = nn.Parameter(_uniform_(torch.empty(k, 4 * n, 4 * n), 4 * n))
        self.fc2_bias = nn.Parameter(_uniform_(torch.empty(k, 1, 4 * n), 4 * n))
        self.group_sizes = [(count, width) for count, width in group_equal_widths(widths)]
        self.out_weights = nn.ParameterList(
            _uniform_(torch.empty(c, 4 * n, 4 * w), 4 * n) for c, w in self.group_sizes
        )
        self.out_biases = nn.ParameterList(
            _uniform_(torch.empty(c, 1, 4 * w), 4 * n) for c, w in self.group_sizes
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, k, n = x.shape
        y = x.permute(2, 1, 0, 3)  # [K, B', T, N]
        y = F.layer_norm(y, (t, n), eps=self.eps)  # GroupNorm(1, N) over (features, frames)
        y = _affine(y, self.norm_weight, self.norm_bias).reshape(k, b * t, n)
        y = torch.tanh(torch.baddbmm(self.fc1_bias, y, self.fc1_weight))
        y = torch.tanh(torch.baddbmm(self.fc2_bias, y, self.fc2_weight))
        masks, k0 = [], 0
        for (c, w), weight, bias in zip(self.group_sizes, self.out_weights, self.out_biases):
            m = F.glu(torch.baddbmm(bias, y[k0 : k0 + c], weight), dim=-1)  # [c, B'*T, 2w]
            m = m.view(c, b, t, 2, w).permute(1, 0, 4, 2, 3)  # [B', c, w, T, 2]
            masks.append(m.reshape(b, c * w, t, 2))
            k0 += c
        return torch.view_as_complex(torch.cat(masks, 1))  # [B', F, T]


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------
class BSRNN(nn.Module):
    """Band-Split RNN for one target.

    ``forward(mixture [B, C, samples])`` returns a :class:`ModelOutput` with the estimate's
    ``waveforms`` [B, 1, C, samples] and complex ``stfts`` [B, 1, C, n_fft//2+1, frames].
    ``bands`` (a list of ``[count, width_hz]``) replaces the target's band layout.
    """

    def __init__(
        self,
        target: str = "vocals",
        feature_dim: int = 64,
        num_repeat: int = 8,
        time_layer: str = "lstm",
        band_layer: str = "lstm",
        n_att_head: int = 0,
        attn_enc_dim: int = 20,
        bands: Sequence[Sequence[float]] | None = None,
        sample_rate: int = 44100,
        n_fft: int = 2048,
        n_hop: int = 512,
        eps: float = 1e-7,
    ) -> None:
        super().__init__()
        if bands is None and target not in TARGETS:
            raise ValueError(
                f"unknown target {target!r}: expected one of {', '.join(TARGETS)} "
                "(or pass `bands` for a custom layout)"
            )
        for key, value in (("time_layer", time_layer), ("band_layer", band_layer)):
            if value not in LAYER_TYPES:
                raise ValueError(
                    f"unknown {key} {value!r}: expected one of {', '.join(LAYER_TYPES)}"
                )
        for key, value in (("feature_dim", feature_dim), ("num_repeat", num_repeat)):
            if int(value) < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if n_att_head < 0 or (n_att_head > 0 and attn_enc_dim < 1):
            raise ValueError(
                f"n_att_head must be >= 0 and attn_enc_dim >= 1, got {n_att_head}, {attn_enc_dim}"
            )
        self.target = target
        self.sample_rate = int(sample_rate)
        self.n_fft, self.n_hop, self.eps = int(n_fft), int(n_hop), float(eps)
        self._config = dict(
            target=target,
            feature_dim=int(feature_dim),
            num_repeat=int(num_repeat),
            time_layer=time_layer,
            band_layer=band_layer,
            n_att_head=int(n_att_head),
            attn_enc_dim=int(attn_enc_dim),
            bands=None if bands is None else [[int(c), float(w)] for c, w in bands],
            sample_rate=self.sample_rate,
            n_fft=self.n_fft,
            n_hop=self.n_hop,
            eps=self.eps,
        )
        self.band_widths = band_widths(target, sample_rate=sample_rate, n_fft=n_fft, layout=bands)
        n_bands = len(self.band_widths)

        self.stft = STFT(n_fft, n_hop)
        self.istft = ISTFT(n_fft, n_hop)
        self.band_split = BandSplit(self.band_widths, feature_dim, eps)
        self.blocks = nn.Sequential(
            *(
                BSBlock(feature_dim, n_bands, time_layer, band_layer, n_att_head, attn_enc_dim, eps)
                for _ in range(num_repeat)
            )
        )
        self.mask = MaskDecoder(self.band_widths, feature_dim, eps)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments: ``BSRNN(**model.config)`` rebuilds the architecture."""
        return dict(self._config)

    @property
    def n_bands(self) -> int:
        return len(self.band_widths)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BSRNN:
        """Build from a ``src_mod`` config mapping (its ``name`` and ``_target_`` are ignored)."""
        valid = list(_CONSTRUCTOR_KEYS)
        unknown = sorted(set(config) - set(valid) - {"name", "_target_"})
        if unknown:
            raise ValueError(
                f"unknown model option(s) {', '.join(unknown)}: valid options are "
                f"{', '.join(valid)}"
            )
        kwargs = {k: config[k] for k in valid if k in config}
        if kwargs.get("bands") is not None:
            kwargs["bands"] = [list(entry) for entry in kwargs["bands"]]
        return cls(**kwargs)

    @classmethod
    def from_checkpoint(cls, path: str, map_location: str | torch.device = "cpu") -> BSRNN:
        """Rebuild a network from one of our checkpoints or a reference ``.ckpt``."""
        from bsrnn.checkpoints import load_model

        return load_model(path, map_location=map_location)

    def forward(self, mixture: torch.Tensor) -> ModelOutput:
        if mixture.dim() != 3:
            raise ValueError(
                f"expected a mixture [batch, channels, samples], got shape {tuple(mixture.shape)}"
            )
        batch, channels, n_samples = mixture.shape
        spec = self.stft(mixture.reshape(batch * channels, n_samples))  # [B', F, T]
        features = self.band_split(spec)  # [T, B', K, N]
        features = self.blocks(features)
        est = self.mask(features) * spec  # [B', F, T]
        wave = self.istft(est, length=n_samples)
        return ModelOutput(
            waveforms=wave.view(batch, 1, channels, n_samples),
            stfts=est.view(batch, 1, channels, *est.shape[-2:]),
        )


_CONSTRUCTOR_KEYS = (
    "target",
    "feature_dim",
    "num_repeat",
    "time_layer",
    "band_layer",
    "n_att_head",
    "attn_enc_dim",
    "bands",
    "sample_rate",
    "n_fft",
    "n_hop",
    "eps",
)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
