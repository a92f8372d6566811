"""The Band-Split RNN family (Luo & Yu, 2022; the reference's newest oBSRNN and SIMO variants),
parameter for parameter the reference's.

Data flow (b = batch, C = channels, B' = b*C when channels are separate items (mono and TAC),
b when they are fused (``stereo="naive"``), F = n_fft/2+1 bins, T = frames, K = bands,
N = feature_dim, H = n_heads, n = N/H, S = number of targets):

    mixture [b, C, samples]
      -> STFT (``StftSpec.stft``)                  [b, C, F, T, 2] (real, imag)
      == ``core``: ----------------------------------------------------------------------
      -> band split (norm + linear per band)       [T, B', K, N]
      -> R blocks: per head (n features each) a time layer then a band layer, each residual;
         then TAC across channels and attention over frames (both optional, residual)
      -> one mask decoder per estimated target     complex masks [B'', F, T]
      -> mask * mixture STFT (the last target may be the mixture minus the others)
                                                   [b, S, C, F, T, 2]
      == end of ``core`` ----------------------------------------------------------------
      -> iSTFT -> waveforms [b, S, C, samples], stfts [b, S, C, F, T] complex

Features are kept "frames first", ``[T, B', K, N]``: the time RNN reads ``[T, B'*K*H, n]``
(sequence first) and, with one head, the band RNN reads ``[T*B', K, n]`` (batch first), both
without a copy. Per-band weights are stacked per run of equal-width bands, so a handful of
batched matmuls replace the reference's loop over 30-57 bands; heads share the sequence
layers' weights and run as extra batch items. ``tests/test_model_equivalence.py`` checks the
result against the plain per-band computation, ``tests/test_checkpoints.py`` against the
reference's own checkpoints, ``tests/test_model.py`` the parameter counts and options.

Only torch is needed here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import bsrnn.checks as checks
from bsrnn.bands import JOINT_LAYOUT, TARGETS, band_widths, group_equal_widths
from bsrnn.errors import ConfigError
from bsrnn.models.base import ModelConfig, SeparationModel, StftSpec, is_exporting
from bsrnn.models.mixed_precision import run_rnn
from bsrnn.spectral import complex_mul

LAYER_TYPES = ("lstm", "gru", "conv")
STEREO_MODES = ("naive", "tac")  # or None: channels are independent items
TAC_ACTIVATIONS = ("tanh", "prelu")

#: Sequences per call of the band RNN on CPU (see ResidualSequenceLayer.forward).
CPU_RNN_CHUNK = 128


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BSRNNConfig(ModelConfig):
    """Every option of the BSRNN family, with the reference's defaults.

    ``targets``: one (a per-target model) or several (SIMO: one shared encoder, one mask
    decoder per target). Band layout: the target's (vocals/other 41, bass 30, drums 55 bands),
    or the joint 57-band layout when ``joint_bandsplit`` or several targets; ``bands``
    (``[[count, width_hz], ...]``) gives a custom one. Sequence module: ``n_heads`` heads of
    ``feature_dim / n_heads`` features sharing one time and one band layer (``lstm``, ``gru``
    or ``conv``; hidden ``fac_sep`` times the head's features, ``bidirectional``), each with
    GroupNorm(``group_num``). ``stereo``: null (channels are independent items), ``naive``
    (channels fused at the band split and the mask decoder) or ``tac`` (a TAC module across
    channels in every block, hidden ``fac_tac * N``, activation ``act_tac``). Attention:
    ``n_att_head`` heads (0: none) with ``attn_enc_dim`` query/key features per band. Mask
    decoder: hidden ``fac_mask * N``; ``mask_ctxt`` sums each estimate bin with its
    ``mask_ctxt`` neighbours on each side within its band. ``subtract_last_trgt`` (several
    targets): the last target is the mixture minus the others' estimates.
    """

    feature_dim: int = 64
    num_repeat: int = 8
    time_layer: str = "lstm"
    band_layer: str = "lstm"
    n_heads: int = 1
    group_num: int = 1
    fac_sep: int = 2
    bidirectional: bool = True
    n_att_head: int = 0
    attn_enc_dim: int = 16
    stereo: str | None = None
    fac_tac: int = 3
    act_tac: str = "tanh"
    fac_mask: int = 4
    mask_ctxt: int = 0
    joint_bandsplit: bool = False
    subtract_last_trgt: bool = False
    nb_channels: int = 2
    bands: tuple[tuple[int, float], ...] | None = None
    n_fft: int = 2048
    n_hop: int = 512
    eps: float = 1e-7

    def __post_init__(self) -> None:
        super().__post_init__()
        w = self.where
        for key in ("time_layer", "band_layer"):
            checks.choice(f"{w}.{key}", getattr(self, key), LAYER_TYPES)
        checks.choice(f"{w}.stereo", self.stereo, STEREO_MODES, optional=True)
        checks.choice(f"{w}.act_tac", self.act_tac, TAC_ACTIVATIONS)
        positive = ("feature_dim", "num_repeat", "n_heads", "group_num", "fac_sep", "fac_tac")
        for key in (*positive, "fac_mask", "nb_channels", "n_fft", "n_hop"):
            checks.integer(f"{w}.{key}", getattr(self, key), minimum=1)
        for key in ("n_att_head", "mask_ctxt"):
            checks.integer(f"{w}.{key}", getattr(self, key), minimum=0)
        if self.feature_dim % self.n_heads:
            raise ConfigError(
                f"{w}.feature_dim={self.feature_dim} is not divisible by {w}.n_heads={self.n_heads}"
            )
        if (self.feature_dim // self.n_heads) % self.group_num:
            raise ConfigError(
                f"{w}.group_num={self.group_num} does not divide the head size "
                f"{self.feature_dim // self.n_heads} (feature_dim / n_heads)"
            )
        if self.n_att_head:
            if self.feature_dim % self.n_att_head:
                raise ConfigError(
                    f"{w}.feature_dim={self.feature_dim} is not divisible by "
                    f"{w}.n_att_head={self.n_att_head}"
                )
            checks.integer(
                f"{w}.attn_enc_dim",
                self.attn_enc_dim,
                minimum=1,
                expected="an integer >= 1 with attention",
            )
        checks.number(f"{w}.eps", self.eps, above=0)

        if self.bands is not None:
            try:
                bands = tuple((int(count), float(hz)) for count, hz in self.bands)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"invalid {w}.bands={self.bands!r}: expected a list of [count, width_hz]"
                ) from None
            object.__setattr__(self, "bands", bands)
        elif not self.joint_split:
            if self.targets[0] not in TARGETS:
                raise ConfigError(
                    f"unknown target {self.targets[0]!r}: expected one of {', '.join(TARGETS)} "
                    f"(or set {w}.joint_bandsplit=true or {w}.bands for another stem)"
                )
        try:
            self.band_widths()
        except ValueError as err:
            raise ConfigError(f"invalid band layout: {err}") from None

    def inert_options(self) -> set[str]:
        """Besides the options declared as not ``network`` (none here), the ones this config's
        other values make inert (they build no weight and change no output): the attention
        size without attention heads, the TAC options without TAC, the channel count when
        channels are independent items, ``subtract_last_trgt`` for one target."""
        inert = super().inert_options()
        if self.n_att_head == 0:
            inert.add("attn_enc_dim")
        if self.stereo != "tac":
            inert.update({"fac_tac", "act_tac"})
        if self.stereo is None:
            inert.add("nb_channels")
        if len(self.targets) == 1:
            inert.add("subtract_last_trgt")
        return inert

    @property
    def joint_split(self) -> bool:
        """Whether the joint 57-band layout is used (several targets, or asked for)."""
        return self.joint_bandsplit or len(self.targets) > 1

    @property
    def n_maskers(self) -> int:
        """Mask decoders: one per target, less the last one with ``subtract_last_trgt``."""
        return len(self.targets) - int(self.subtract_last_trgt and len(self.targets) > 1)

    def band_widths(self) -> list[int]:
        """Band widths in bins, low to high."""
        layout = (
            self.bands if self.bands is not None else JOINT_LAYOUT if self.joint_split else None
        )
        return band_widths(
            self.targets[0], sample_rate=self.sample_rate, n_fft=self.n_fft, layout=layout
        )


# --------------------------------------------------------------------------------------------
# Small pieces
# --------------------------------------------------------------------------------------------
def _uniform_(t: torch.Tensor, fan_in: int) -> torch.Tensor:
    """PyTorch's default init for Linear/Conv weights and biases: U(-1/sqrt(fan_in), +)."""
    bound = 1.0 / math.sqrt(fan_in)
    return nn.init.uniform_(t, -bound, bound)


def _affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(bias, x, weight)


def _prelu(x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x, slope * x)


def _layer_norm(x: torch.Tensor, dims: int, eps: float) -> torch.Tensor:
    """Layer norm (no affine) over the last ``dims`` axes. Exported graphs get the same
    statistics from ``var_mean`` (the exporter needs the normalised shape as constants, and
    here it holds the frame count)."""
    if is_exporting():
        axes = tuple(range(-dims, 0))
        var, mean = torch.var_mean(x, dim=axes, correction=0, keepdim=True)
        return (x - mean) * torch.rsqrt(var + eps)
    return F.layer_norm(x, x.shape[-dims:], eps=eps)


# --------------------------------------------------------------------------------------------
# Band split
# --------------------------------------------------------------------------------------------
class BandGroupSplit(nn.Module):
    """``count`` bands of ``width`` bins of ``fused`` channels each: GroupNorm(1) over the
    band's ``fused*2*width`` values, then a linear map to N.

    ``[B, fused, count, width, T, 2] (real, imag) -> [count, T*B, N]``.
    """

    def __init__(self, count: int, width: int, fused: int, feature_dim: int, eps: float) -> None:
        super().__init__()
        self.count, self.width, self.eps = count, width, eps
        size = fused * 2 * width  # features ordered (channel, real/imag, bin), as the reference
        self.norm_weight = nn.Parameter(torch.ones(count, 1, size))
        self.norm_bias = nn.Parameter(torch.zeros(count, 1, size))
        self.weight = nn.Parameter(_uniform_(torch.empty(count, size, feature_dim), size))
        self.bias = nn.Parameter(_uniform_(torch.empty(count, 1, feature_dim), size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, fused, k, w, t, _ = x.shape
        var, mean = torch.var_mean(x, dim=(1, 3, 4, 5), correction=0, keepdim=True)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        x = x.permute(2, 4, 0, 1, 5, 3).reshape(k, t * b, fused * 2 * w)  # [k, T*B, fused*2w]
        x = _affine(x, self.norm_weight, self.norm_bias)
        return torch.baddbmm(self.bias, x, self.weight)  # [k, T*B, N]


class BandSplit(nn.Module):
    """``[B, fused, F, T, 2] (real, imag) -> [T, B, K, N]``."""

    def __init__(self, widths: Sequence[int], fused: int, feature_dim: int, eps: float) -> None:
        super().__init__()
        self.groups = nn.ModuleList(
            BandGroupSplit(count, width, fused, feature_dim, eps)
            for count, width in group_equal_widths(widths)
        )

    def forward(self, ri: torch.Tensor) -> torch.Tensor:
        b, fused, _, t, _ = ri.shape
        feats, f0 = [], 0
        for g in self.groups:
            f1 = f0 + g.count * g.width
            feats.append(g(ri[:, :, f0:f1].reshape(b, fused, g.count, g.width, t, 2)))
            f0 = f1
        out = torch.cat(feats, 0)  # [K, T*B, N]
        return out.transpose(0, 1).reshape(t, b, -1, out.shape[-1])


# --------------------------------------------------------------------------------------------
# Separator: residual sequence layers (per head), TAC, attention
# --------------------------------------------------------------------------------------------
class ResidualSequenceLayer(nn.Module):
    """Per head: GroupNorm(g, n) -> LSTM/GRU (hidden n*fac_sep, one or two directions) or
    Conv1d(n, n*fac_sep*dirs, 3)+ReLU -> Linear(n*fac_sep*dirs, n) -> + input.

    ``axis="time"`` models each band's sequence of frames, ``axis="band"`` each frame's
    sequence of bands. The ``heads`` chunks of ``n = N/heads`` features share the weights.
    ``[T, B, K, N] -> [T, B, K, N]``.
    """

    def __init__(
        self,
        feature_dim: int,
        heads: int,
        layer_type: str,
        axis: str,
        fac_sep: int,
        bidirectional: bool,
        group_num: int,
        eps: float,
    ) -> None:
        super().__init__()
        n = feature_dim // heads
        hidden, dirs = n * fac_sep, 2 if bidirectional else 1
        self.axis, self.layer_type, self.heads, self.groups, self.eps = (
            axis,
            layer_type,
            heads,
            group_num,
            eps,
        )
        self.norm = nn.GroupNorm(group_num, n, eps)  # affine parameters; statistics below
        if layer_type in ("lstm", "gru"):
            rnn_cls = nn.LSTM if layer_type == "lstm" else nn.GRU
            self.rnn = rnn_cls(
                n, hidden, 1, batch_first=(axis == "band"), bidirectional=bidirectional
            )
        else:
            self.conv = nn.Conv1d(n, hidden * dirs, kernel_size=3, padding=1)
        self.proj = nn.Linear(hidden * dirs, n)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        """GroupNorm per (item, head) over (sequence, group features): ``[T, B, K, N]`` ->
        ``[T, B, K, H, n]``."""
        t, b, k, _ = x.shape
        h, g = self.heads, self.groups
        if h == 1 and g == 1 and self.axis == "band":  # per (frame, item) over (bands, features)
            y = _layer_norm(x, 2, self.eps).unsqueeze(3)
        else:
            y = x.view(t, b, k, h, g, -1)
            dims = (0, 5) if self.axis == "time" else (2, 5)
            var, mean = torch.var_mean(y, dim=dims, correction=0, keepdim=True)
            y = ((y - mean) * torch.rsqrt(var + self.eps)).view(t, b, k, h, -1)
        return _affine(y, self.norm.weight, self.norm.bias)

    def _rnn_proj(self, y: torch.Tensor) -> torch.Tensor:
        """The recurrent layer then ``proj``: ``[batch, L, n] -> [batch, L, n]``."""
        if (
            self.axis == "band"
            and y.device.type == "cpu"
            and y.shape[0] > CPU_RNN_CHUNK
            and not is_exporting()  # an exported graph keeps no shape-dependent split
        ):
            # oneDNN's CPU RNN runs much faster on a few hundred sequences at a time than on
            # thousands (cache locality); results are identical. Projecting each part before
            # joining them moves a quarter of the data (n features instead of 2 * fac_sep * n)
            return torch.cat(
                [self.proj(run_rnn(self.rnn, part)) for part in y.split(CPU_RNN_CHUNK)]
            )
        return self.proj(run_rnn(self.rnn, y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, k, n_all = x.shape
        h = self.heads
        y = self._normalize(x)  # [T, B, K, H, n]
        n = y.shape[-1]
        if self.axis == "time":
            y = y.reshape(t, b * k * h, n)  # sequence first
            if self.layer_type == "conv":
                y = self.proj(F.relu(self.conv(y.permute(1, 2, 0))).permute(2, 0, 1))
            else:
                y = self._rnn_proj(y)
            return x + y.view(t, b, k, n_all)
        y = y.transpose(2, 3).reshape(t * b * h, k, n)  # batch first (no copy with one head)
        if self.layer_type == "conv":
            y = self.proj(F.relu(self.conv(y.transpose(1, 2))).transpose(1, 2))
        else:
            y = self._rnn_proj(y)
        y = y.view(t, b, h, k, n).transpose(2, 3)
        return x + y.reshape(t, b, k, n_all)


class TAC(nn.Module):
    """Transform-average-concatenate across the channels of each item; residual.

    ``[T, b*C, K, N] -> [T, b*C, K, N]`` (channels are the minor part of the item axis).
    ``act="prelu"``: one PReLU slope shared by the three stages, as the reference ties it.
    """

    def __init__(self, feature_dim: int, fac_tac: int, act: str, channels: int) -> None:
        super().__init__()
        hidden = fac_tac * feature_dim
        self.channels = channels
        self.transform = nn.Linear(feature_dim, hidden)
        self.average = nn.Linear(hidden, hidden)
        self.concat = nn.Linear(2 * hidden, feature_dim)  # input: [transformed, averaged]
        self.prelu = nn.Parameter(torch.full((1,), 0.25)) if act == "prelu" else None

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) if self.prelu is None else _prelu(x, self.prelu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, bc, k, n = x.shape
        channels = self.channels
        v = self._act(self.transform(x)).view(t, bc // channels, channels, k, -1)  # [T,b,C,K,Hd]
        r = self._act(self.average(v.mean(2)))  # [T, b, K, Hd]
        hidden = v.shape[-1]
        # concat([v, r]) @ W.T == v @ W_v.T + r @ W_r.T: the average is not repeated per channel
        w_v, w_r = self.concat.weight[:, :hidden], self.concat.weight[:, hidden:]
        y = F.linear(v, w_v, self.concat.bias) + F.linear(r, w_r).unsqueeze(2)
        return x + self._act(y).view(t, bc, k, n)


class _HeadProjection(nn.Module):
    """Per head: Linear(N, D) -> PReLU -> layer norm over (bands, D).

    ``[T, B, K, N] -> [T, B, heads, K, D]``.
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
        y = _layer_norm(_prelu(y, self.prelu), 2, self.eps)
        return _affine(y, self.norm_weight, self.norm_bias)


class BandAttention(nn.Module):
    """TFGridNet-style self-attention over frames, features flattened across bands; residual.

    ``[T, B, K, N] -> [T, B, K, N]``.
    """

    def __init__(self, feature_dim: int, n_bands: int, heads: int, enc_dim: int, eps: float):
        super().__init__()
        self.heads = heads
        self.query = _HeadProjection(feature_dim, heads, enc_dim, n_bands, eps)
        self.key = _HeadProjection(feature_dim, heads, enc_dim, n_bands, eps)
        self.value = _HeadProjection(feature_dim, heads, feature_dim // heads, n_bands, eps)
        self.out = _HeadProjection(feature_dim, 1, feature_dim, n_bands, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, k, n = x.shape

        def per_head(y: torch.Tensor) -> torch.Tensor:  # [T, B, h, K, D] -> [B, h, T, K*D]
            return y.permute(1, 2, 0, 3, 4).reshape(b, self.heads, t, -1)

        q, kk, v = per_head(self.query(x)), per_head(self.key(x)), per_head(self.value(x))
        y = F.scaled_dot_product_attention(q, kk, v)  # [B, h, T, K*N/h], scale 1/sqrt(K*E)
        y = y.view(b, self.heads, t, k, n // self.heads).permute(2, 0, 3, 1, 4).reshape(t, b, k, n)
        return x + self.out(y).squeeze(2)


class BSBlock(nn.Module):
    """One band-sequence block (the reference's "separator" block): time layer, band layer
    (per head), then TAC and attention."""

    def __init__(self, config: BSRNNConfig, n_bands: int) -> None:
        super().__init__()
        cfg, n = config, config.feature_dim

        def sequence_layer(layer_type: str, axis: str) -> ResidualSequenceLayer:
            return ResidualSequenceLayer(
                n, cfg.n_heads, layer_type, axis, cfg.fac_sep, cfg.bidirectional,
                cfg.group_num, cfg.eps,
            )  # fmt: skip

        self.time = sequence_layer(cfg.time_layer, "time")
        self.band = sequence_layer(cfg.band_layer, "band")
        self.tac = (
            TAC(n, cfg.fac_tac, cfg.act_tac, cfg.nb_channels) if cfg.stereo == "tac" else None
        )
        self.attention = (
            BandAttention(n, n_bands, cfg.n_att_head, cfg.attn_enc_dim, cfg.eps)
            if cfg.n_att_head
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.band(self.time(x))
        if self.tac is not None:
            x = self.tac(x)
        return x if self.attention is None else self.attention(x)


# --------------------------------------------------------------------------------------------
# Mask decoder
# --------------------------------------------------------------------------------------------
class MaskDecoder(nn.Module):
    """One target's masks. Per band: GroupNorm(1, N) -> N->M, tanh -> M->M, tanh ->
    M->4*width*fused -> GLU (value * sigmoid(gate)), with M = fac_mask * N.

    ``[T, B, K, N] -> masks [B*fused, F, T, 2]`` (real, imag). The first two layers have the same
    shape for every band and run as one batched matmul; the last runs once per equal-width group.
    """

    def __init__(
        self, widths: Sequence[int], feature_dim: int, fac_mask: int, fused: int, eps: float
    ) -> None:
        super().__init__()
        n, k, m = feature_dim, len(widths), fac_mask * feature_dim
        self.eps, self.fused = eps, fused
        self.norm_weight = nn.Parameter(torch.ones(k, 1, 1, n))
        self.norm_bias = nn.Parameter(torch.zeros(k, 1, 1, n))
        self.fc1_weight = nn.Parameter(_uniform_(torch.empty(k, n, m), n))
        self.fc1_bias = nn.Parameter(_uniform_(torch.empty(k, 1, m), n))
        self.fc2_weight = nn.Parameter(_uniform_(torch.empty(k, m, m), m))
        self.fc2_bias = nn.Parameter(_uniform_(torch.empty(k, 1, m), m))
        self.group_sizes = list(group_equal_widths(widths))
        self.out_weights = nn.ParameterList(
            _uniform_(torch.empty(count, m, 4 * w * fused), m) for count, w in self.group_sizes
        )
        self.out_biases = nn.ParameterList(
            _uniform_(torch.empty(count, 1, 4 * w * fused), m) for count, w in self.group_sizes
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, k, n = x.shape
        fused = self.fused
        y = x.permute(2, 1, 0, 3)  # [K, B, T, N]
        y = _layer_norm(y, 2, self.eps)  # GroupNorm(1, N) over (features, frames)
        y = _affine(y, self.norm_weight, self.norm_bias).reshape(k, b * t, n)
        y = torch.baddbmm(self.fc1_bias, y, self.fc1_weight).tanh_()
        y = torch.baddbmm(self.fc2_bias, y, self.fc2_weight).tanh_()
        masks, k0 = [], 0
        for (count, w), weight, bias in zip(self.group_sizes, self.out_weights, self.out_biases):
            m = torch.baddbmm(bias, y[k0 : k0 + count], weight).view(count, b, t, fused, 4 * w)
            m = F.glu(m, dim=-1).view(count, b, t, fused, 2, w)  # (channel, real/imag, bin)
            masks.append(m.permute(1, 3, 0, 5, 2, 4).reshape(b * fused, count * w, t, 2))
            k0 += count
        return torch.cat(masks, 1)  # [B*fused, F, T, 2]


def band_context_sum(spec: torch.Tensor, widths: Sequence[int], context: int) -> torch.Tensor:
    """Each bin replaced by the sum of itself and its ``context`` neighbours on each side
    within its band (zeros beyond the band's edges). ``[B, F, T]`` complex or ``[B, F, T, 2]``
    (real, imag) -> the same."""
    if spec.is_complex():
        out = band_context_sum(torch.view_as_real(spec), widths, context)
        return torch.view_as_complex(out.contiguous())
    out, f0 = [], 0
    for count, width in group_equal_widths(widths):
        f1 = f0 + count * width
        x = spec[:, f0:f1].unflatten(1, (count, width))  # [B, c, w, T, 2]
        padded = F.pad(x, (0, 0, 0, 0, context, context))
        total = sum(padded[:, :, i : i + width] for i in range(2 * context + 1))
        out.append(total.flatten(1, 2))
        f0 = f1
    return torch.cat(out, 1)


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------
#: Seconds per chunk when BSRNN separates whole tracks (the reference's evaluation segment;
#: ``eval.segment_len`` overrides it).
SEGMENT_SECONDS = 10.0


class BSRNN(SeparationModel):
    """Band-Split RNN for one target or several (SIMO), with every option of
    :class:`BSRNNConfig`.

    ``core(spec [b, C, F, frames, 2]) -> [b, S, C, F, frames, 2]``; the waveform
    ``forward(mixture [b, C, samples])`` (the base class's: STFT -> core -> iSTFT) returns a
    :class:`~bsrnn.models.base.ModelOutput` with ``waveforms`` [b, S, C, samples] and complex
    ``stfts`` [b, S, C, n_fft//2+1, frames], S = ``len(config.targets)``, in the order of
    ``config.targets``.
    """

    def __init__(self, config: BSRNNConfig) -> None:
        super().__init__(config)
        cfg = config
        self.band_widths = cfg.band_widths()
        fused = cfg.nb_channels if cfg.stereo == "naive" else 1
        self.band_split = BandSplit(self.band_widths, fused, cfg.feature_dim, cfg.eps)
        self.blocks = nn.Sequential(*(BSBlock(cfg, self.n_bands) for _ in range(cfg.num_repeat)))
        self.maskers = nn.ModuleList(
            MaskDecoder(self.band_widths, cfg.feature_dim, cfg.fac_mask, fused, cfg.eps)
            for _ in range(cfg.n_maskers)
        )

    @property
    def n_bands(self) -> int:
        return len(self.band_widths)

    @property
    def stft_spec(self) -> StftSpec:
        return StftSpec(n_fft=self.config.n_fft, hop_length=self.config.n_hop)

    @property
    def audio_channels(self) -> int | None:
        return self.config.nb_channels if self.config.stereo is not None else None

    @property
    def segment_samples(self) -> int:
        """The reference's evaluation chunk: :data:`SEGMENT_SECONDS`."""
        return int(SEGMENT_SECONDS * self.sample_rate)

    def check_mixture(self, mixture: torch.Tensor) -> None:
        cfg = self.config
        if mixture.dim() == 3 and cfg.stereo is not None and mixture.shape[1] != cfg.nb_channels:
            raise ConfigError(
                f"this model (stereo={cfg.stereo}) takes {cfg.nb_channels}-channel mixtures, got "
                f"{mixture.shape[1]} channel(s)"
            )
        super().check_mixture(mixture)

    def core(self, spec: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        batch, channels, n_bins, frames, _ = spec.shape
        flat = spec.reshape(batch * channels, n_bins, frames, 2)
        fused = spec if cfg.stereo == "naive" else flat[:, None]  # [B', fused, F, T, 2]
        features = self.blocks(self.band_split(fused))  # [T, B', K, N]
        estimates = [complex_mul(masker(features), flat) for masker in self.maskers]
        if cfg.mask_ctxt:
            estimates = [band_context_sum(e, self.band_widths, cfg.mask_ctxt) for e in estimates]
        if len(estimates) < len(cfg.targets):  # subtract_last_trgt
            estimates.append(flat.float() - torch.stack(estimates).sum(0))
        est = torch.stack(estimates)  # [S, b*C, F, T, 2]
        return est.view(-1, batch, channels, n_bins, frames, 2).transpose(0, 1)
