"""BS-RoFormer (Lu et al., 2023) and Mel-RoFormer (Wang et al., 2023), number for number the
networks of Music-Source-Separation-Training (MSST, ``models/bs_roformer/``), whose checkpoints
load here (:mod:`bsrnn.models.roformer_msst`).

Both share one core; only the band layout and the mask merge differ:

* BS-RoFormer: contiguous bands of ``freqs_per_bands`` bins; the masks of all bands, side by
  side, cover the spectrum once.
* Mel-RoFormer: ``num_bands`` overlapping bands from a mel filterbank (a bin belongs to one or
  two bands); the masks of the bands holding a bin are averaged.

Data flow (B = batch, C = channels (2 if ``stereo``), F = n_fft/2+1 bins, T = frames,
K = bands, D = ``dim``, S = stems, H = heads, d = ``dim_head``):

    mixture [B, C, samples]
      -> STFT (``StftSpec.stft``)                   [B, C, F, T, 2]
      == ``core``: ---------------------------------------------------------------------
      -> channels folded into the bins              [B, T, F*C*2] (bin, channel, re/im)
      -> band split: per band RMSNorm + Linear      [B, T, K, D]
      -> ``depth`` blocks, each: [linear attention over all T*K tokens] (optional),
         a transformer over frames (per band)       [B*K, T, D]
         a transformer over bands (per frame)       [B*T, K, D]
      -> final RMSNorm (BS; Mel normalises each transformer's output instead)
      -> per stem, per band: MLP (Tanh) + GLU       complex masks [B, S, T, F, C]
         (Mel: masks of overlapping bands summed and divided by the bands per bin)
      -> mask * mixture STFT, DC bin zeroed (``zero_dc``)  [B, S, C, F, T, 2]
      == end of ``core`` ---------------------------------------------------------------
      -> iSTFT                                      waveforms [B, S, C, samples]

Every transformer layer is pre-norm attention (RMSNorm, one projection to q, k, v, rotary
position embedding on q and k, softmax attention, a sigmoid gate per head) then a feed-forward
layer (RMSNorm, Linear 4x, GELU, Linear), each with a residual.

Bands of equal width share stacked weights, so the band split and the mask heads run as a few
batched matmuls (one per distinct width) instead of a loop over 60 bands;
``tests/reference/roformer_per_band_baseline.py`` is the plain per-band computation and
``tests/test_roformer.py`` checks the two agree and match MSST's stored outputs. The
transformers keep MSST's parameter names (``layers.i.j.layers.k.0.to_qkv.weight``, ...), the
stacked band weights have their own (the reader maps MSST's per-band keys onto them).

Only torch is needed here (no einops, librosa or rotary-embedding-torch).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

import bsrnn.checks as checks
from bsrnn.bands import mel_band_membership
from bsrnn.errors import ConfigError
from bsrnn.models.base import (
    Framing,
    LossPreference,
    ModelConfig,
    MultiResolutionSpec,
    SeparationModel,
    StftSpec,
    is_exporting,
    option,
)
from bsrnn.spectral import complex_mul

#: MSST's default BS-RoFormer layout: 62 bands of 2..129 bins at n_fft 2048 (1025 bins).
DEFAULT_FREQS_PER_BANDS: tuple[int, ...] = (
    (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)
)

#: The only window MSST's checkpoints use (``stft_window_fn`` / ``multi_stft_window_fn``).
WINDOW_FUNCTIONS = ("hann", "hann_window", "torch.hann_window")

#: Scale of MSST's linear attention (``LinearAttention(scale=8)``).
LINEAR_ATTENTION_SCALE = 8.0


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RoformerConfig(ModelConfig, abc.ABC):
    """Options both RoFormers share, named and defaulted as MSST's constructors (``dim`` and
    ``depth`` have no default there: they must be given).

    ``targets`` names the stems in output order; ``num_stems`` (null: ``len(targets)``) must
    equal their number. ``flash_attn`` is accepted and ignored (attention always runs through
    ``F.scaled_dot_product_attention``). ``use_torch_checkpoint`` recomputes the band split,
    each transformer and each mask head in the backward pass (less memory on long chunks).
    ``segment``: the chunk length (samples) the model prefers for whole-track separation
    (MSST's ``audio.chunk_size``), or null. ``multi_stft_*``: MSST's multi-resolution STFT
    loss (the model's :attr:`~Roformer.loss_preference`). Each option that is not a network
    option declares its role on its field (``loss``, ``runtime``, ``unused``:
    :data:`~bsrnn.models.base.OPTION_ROLES`), which :meth:`differences` reads.
    """

    dim: int | None = None
    depth: int | None = None
    stereo: bool = False
    num_stems: int | None = None
    time_transformer_depth: int = 2
    freq_transformer_depth: int = 2
    linear_transformer_depth: int = 0
    dim_head: int = 64
    heads: int = 8
    attn_dropout: float = 0.0
    ff_dropout: float = 0.0
    flash_attn: bool = option(True, role="unused")
    dim_freqs_in: int = 1025
    stft_n_fft: int = 2048
    stft_hop_length: int = 512
    stft_win_length: int = 2048
    stft_normalized: bool = False
    stft_window_fn: str | None = None
    zero_dc: bool = True
    mask_estimator_depth: int = 2
    multi_stft_resolution_loss_weight: float = option(1.0, role="loss")
    multi_stft_resolutions_window_sizes: tuple[int, ...] = option(
        (4096, 2048, 1024, 512, 256), role="loss"
    )
    multi_stft_hop_size: int = option(147, role="loss")
    multi_stft_normalized: bool = option(False, role="loss")
    multi_stft_window_fn: str | None = option(None, role="loss")
    mlp_expansion_factor: int = 4
    use_torch_checkpoint: bool = option(False, role="runtime")
    skip_connection: bool = False
    use_pope: bool = False
    segment: int | None = option(None, role="runtime")

    #: Which MSST model this is (``bs_roformer`` / ``mel_band_roformer``).
    msst_model_type: ClassVar[str] = ""

    def __post_init__(self) -> None:
        w = self.where
        num_stems = self.num_stems
        super().__post_init__()
        if num_stems is not None and num_stems != len(self.targets):
            raise ConfigError(
                f"{w}.num_stems={num_stems} but {w}.targets={list(self.targets)} names "
                f"{len(self.targets)} stem(s): give one name per stem (or leave num_stems out)"
            )
        object.__setattr__(self, "num_stems", len(self.targets))
        for key in ("dim", "depth"):
            if getattr(self, key) is None:
                raise ConfigError(f"{w}.{key} is required (MSST's constructor has no default)")
        positive = (
            "dim",
            "depth",
            "dim_head",
            "heads",
            "stft_n_fft",
            "stft_hop_length",
            "stft_win_length",
            "multi_stft_hop_size",
            "mlp_expansion_factor",
        )
        for key in positive:
            checks.integer(f"{w}.{key}", getattr(self, key), minimum=1)
        for key in (
            "time_transformer_depth",
            "freq_transformer_depth",
            "linear_transformer_depth",
            "mask_estimator_depth",
        ):
            checks.integer(f"{w}.{key}", getattr(self, key), minimum=0)
        if self.dim_head % 2:
            checks.fail(
                f"{w}.dim_head",
                self.dim_head,
                "an even number (rotary embeddings rotate pairs of features)",
            )
        for key in ("attn_dropout", "ff_dropout"):
            checks.number(f"{w}.{key}", getattr(self, key), minimum=0, below=1)
        checks.integer(
            f"{w}.stft_win_length",
            self.stft_win_length,
            maximum=self.stft_n_fft,
            expected=f"at most stft_n_fft={self.stft_n_fft}",
        )
        bins = self.stft_n_fft // 2 + 1
        if self.dim_freqs_in != bins:
            raise ConfigError(
                f"{w}.dim_freqs_in={self.dim_freqs_in} disagrees with {w}.stft_n_fft="
                f"{self.stft_n_fft} ({bins} bins): set dim_freqs_in to {bins}"
            )
        for key in ("stft_window_fn", "multi_stft_window_fn"):
            value = getattr(self, key)
            if value is not None and value not in WINDOW_FUNCTIONS:
                checks.fail(
                    f"{w}.{key}",
                    value,
                    "null or 'hann' (a Hann window, the only one MSST's checkpoints use)",
                )
        if self.use_pope:
            raise ConfigError(
                f"unsupported {w}.use_pope=true: PoPE position embeddings are not implemented "
                "(rotary embeddings only)"
            )
        key = "multi_stft_resolutions_window_sizes"
        sizes = checks.integers(f"{w}.{key}", getattr(self, key), minimum=1)
        object.__setattr__(self, key, sizes)
        checks.integer(
            f"{w}.segment",
            self.segment,
            minimum=self.stft_n_fft,
            optional=True,
            expected=f"at least stft_n_fft={self.stft_n_fft} samples",
        )

    @property
    def channels(self) -> int:
        return 2 if self.stereo else 1

    @property
    def n_bins(self) -> int:
        return self.stft_n_fft // 2 + 1

    @abc.abstractmethod
    def band_bins(self) -> list[list[int]]:
        """The bins of every band, low to high (overlapping for Mel)."""

    @abc.abstractmethod
    def mask_layers(self) -> int:
        """Linear layers of each band's mask MLP (MSST's BS and Mel files count differently)."""


@dataclass(frozen=True)
class BSRoformerConfig(RoformerConfig):
    """BS-RoFormer: ``freqs_per_bands`` (bins per band, low to high, summing to
    ``stft_n_fft / 2 + 1``); the mask MLP has ``mask_estimator_depth`` linear layers."""

    freqs_per_bands: tuple[int, ...] = DEFAULT_FREQS_PER_BANDS

    msst_model_type: ClassVar[str] = "bs_roformer"

    def __post_init__(self) -> None:
        super().__post_init__()
        w = self.where
        bands = checks.integers(
            f"{w}.freqs_per_bands",
            self.freqs_per_bands,
            minimum=1,
            expected="a list of bin counts >= 1",
        )
        object.__setattr__(self, "freqs_per_bands", bands)
        if len(bands) < 2 or sum(bands) != self.n_bins:
            raise ConfigError(
                f"invalid {w}.freqs_per_bands: {len(bands)} band(s) covering {sum(bands)} bins, "
                f"but stft_n_fft={self.stft_n_fft} gives {self.n_bins} bins (expected at least "
                "2 bands summing to that)"
            )

    def band_bins(self) -> list[list[int]]:
        edges = [0]
        for width in self.freqs_per_bands:
            edges.append(edges[-1] + width)
        return [list(range(a, b)) for a, b in zip(edges[:-1], edges[1:])]

    def mask_layers(self) -> int:
        return max(self.mask_estimator_depth, 1)


@dataclass(frozen=True)
class MelRoformerConfig(RoformerConfig):
    """Mel-RoFormer: ``num_bands`` overlapping mel bands (Slaney scale at ``sample_rate``);
    the mask MLP has ``mask_estimator_depth + 1`` linear layers; ``match_input_audio_length``
    (MSST's default false) makes the iSTFT return exactly the input's length, else it returns
    ``(frames - 1) * stft_hop_length`` samples (the input's length when that is a multiple of
    the hop). Defaults differ from BS-RoFormer's as in MSST (dropout 0.1, mask depth 1)."""

    attn_dropout: float = 0.1
    ff_dropout: float = 0.1
    mask_estimator_depth: int = 1
    num_bands: int = 60
    match_input_audio_length: bool = False

    msst_model_type: ClassVar[str] = "mel_band_roformer"

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.integer(f"{self.where}.num_bands", self.num_bands, minimum=2)
        try:
            self.membership()
        except ValueError as err:
            raise ConfigError(f"invalid {self.where}.num_bands={self.num_bands}: {err}") from None

    def membership(self) -> torch.Tensor:
        """``[num_bands, bins]`` bool: which bins each band holds."""
        return mel_band_membership(self.sample_rate, self.stft_n_fft, self.num_bands)

    def band_bins(self) -> list[list[int]]:
        return [row.nonzero().flatten().tolist() for row in self.membership()]

    def mask_layers(self) -> int:
        return self.mask_estimator_depth + 1


# --------------------------------------------------------------------------------------------
# Small pieces
# --------------------------------------------------------------------------------------------
def _uniform_(t: torch.Tensor, fan_in: int) -> torch.Tensor:
    """PyTorch's default init for Linear weights and biases: U(-1/sqrt(fan_in), +)."""
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        return t.uniform_(-bound, bound)


def _maybe_checkpoint(enabled: bool, fn: Callable, *args: torch.Tensor) -> torch.Tensor:
    """``fn(*args)``, recomputed in the backward pass when ``enabled`` and grads are on."""
    if enabled and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


class StackedLinear(nn.Module):
    """``count`` Linear(size_in, size_out) layers applied to ``count`` inputs at once.
    ``[count, N, size_in] -> [count, N, size_out]``."""

    def __init__(self, count: int, size_in: int, size_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(_uniform_(torch.empty(count, size_out, size_in), size_in))
        self.bias = nn.Parameter(_uniform_(torch.empty(count, 1, size_out), size_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight.transpose(1, 2))


class RMSNorm(nn.Module):
    """``normalize(x, dim=-1) * sqrt(dim) * gamma``. ``[..., dim] -> [..., dim]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) * (self.gamma * self.scale)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding as rotary-embedding-torch (theta 10000, interleaved pairs):
    feature pair ``(2i, 2i+1)`` at position ``p`` is rotated by ``p * freqs[i]``.

    ``freqs`` is a persistent buffer (MSST stores it once per attention layer: the time
    transformers share one module, the frequency transformers another). It holds no
    computation of its own (no ``forward``): :class:`Attention` asks it for the
    :meth:`rotation` of a sequence length and applies it with :meth:`rotate`. Positions are
    exact float32 integers (rotary-embedding-torch makes them in the input's dtype: under bf16
    autocast it rounds positions above 256).
    """

    def __init__(self, dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        self.register_buffer("freqs", freqs)

    def rotation(self, n: int, heads: int, device: torch.device) -> torch.Tensor:
        """``exp(i * p * freqs)`` for positions ``p = 0..n-1`` (one per pair of features):
        complex64 ``[heads, n, dim / 2]``, the same for every head (written out per head so
        that :meth:`rotate`'s product takes its layout); when exporting ``[n, dim / 2, 2]``
        (cos, sin), see :meth:`_rotate_real`."""
        angles = torch.arange(n, device=device, dtype=torch.float32)[:, None] * self.freqs.float()
        if is_exporting():
            return torch.stack([angles.cos(), angles.sin()], -1)
        return torch.polar(torch.ones_like(angles), angles).expand(heads, -1, -1).contiguous()

    @staticmethod
    def rotate(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        """Queries or keys ``x [N, L, h, d]`` (any strides) rotated pair by pair,
        ``(x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin)``, i.e. ``x * cos + rotate_half(x) *
        sin``, as one complex product with ``rotation [h, L, d / 2]`` (in float32, returned in
        ``x``'s dtype) -> ``[N, h, L, d]``, contiguous (SDPA reads it faster than a strided
        view): an elementwise product's output takes the memory layout of its first operand
        that is not broadcast along a dimension, here ``rotation``'s ``[h, L]`` order."""
        if is_exporting():  # the same product in real arithmetic (ONNX has no complex type)
            return RotaryEmbedding._rotate_real(x, rotation)
        pairs = x.float().unflatten(-1, (-1, 2))
        if pairs.storage_offset() % 2 or any(st % 2 for st in pairs.stride()[:-1]):
            pairs = pairs.contiguous()
        pairs_c = torch.view_as_complex(pairs).transpose(1, 2)  # [N, h, L, d/2]
        rotated = rotation * pairs_c  # rotation first: see above
        return torch.view_as_real(rotated).flatten(-2).to(x.dtype)

    @staticmethod
    def _rotate_real(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        """:meth:`rotate` without complex tensors; ``rotation`` is ``[L, d / 2, 2]`` (cos,
        sin) here (see :meth:`rotation`)."""
        x1, x2 = x.float().unflatten(-1, (-1, 2)).transpose(1, 2).unbind(-1)  # [N, h, L, d/2]
        cos, sin = rotation.unbind(-1)
        out = torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)
        return out.flatten(-2).to(x.dtype)


# --------------------------------------------------------------------------------------------
# Transformers (MSST's parameter names)
# --------------------------------------------------------------------------------------------
class FeedForward(nn.Module):
    """RMSNorm -> Linear(dim, 4 dim) -> GELU -> Linear(4 dim, dim) (dropout after both).
    ``[..., dim] -> [..., dim]``."""

    def __init__(self, dim: int, dropout: float, mult: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(
            RMSNorm(dim),
            nn.Linear(dim, dim * mult),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(dim * mult, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class QKVProjection(nn.Linear):
    """``Linear(dim, 3 * inner, bias=False)`` whose output is split into q, k and v:
    ``[..., dim] -> 3 x [..., inner]``, computed as three matmuls (on CPU, three outputs of
    ``inner`` columns are faster than one of ``3 * inner``: cache blocking)."""

    def __init__(self, dim: int, inner: int) -> None:
        super().__init__(dim, 3 * inner, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = (F.linear(x, w) for w in self.weight.chunk(3))
        return q, k, v


class Attention(nn.Module):
    """Gated multi-head self-attention with rotary positions. ``[N, L, dim] -> [N, L, dim]``
    (N sequences of L tokens).

    RMSNorm -> ``to_qkv`` (no bias) -> rotary embedding on q and k (one complex product
    each) -> SDPA -> ``* sigmoid(to_gates(x))`` (one gate per head, x the normed input) ->
    ``to_out`` (no bias).
    """

    def __init__(
        self, dim: int, heads: int, dim_head: int, dropout: float, rotary_embed: RotaryEmbedding
    ) -> None:
        super().__init__()
        self.heads, self.dim_head, self.dropout = heads, dim_head, dropout
        inner = heads * dim_head
        self.rotary_embed = rotary_embed
        self.norm = RMSNorm(dim)
        self.to_qkv = QKVProjection(dim, inner)
        self.to_gates = nn.Linear(dim, heads)
        self.to_out = nn.Sequential(nn.Linear(inner, dim, bias=False), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        h, d = self.heads, self.dim_head
        x = self.norm(x)
        q, k, v = self.to_qkv(x)  # each [N, L, h*d]
        rotation = self.rotary_embed.rotation(length, h, x.device)
        q = RotaryEmbedding.rotate(q.unflatten(-1, (h, d)), rotation)  # [N, h, L, d]
        k = RotaryEmbedding.rotate(k.unflatten(-1, (h, d)), rotation)
        v = v.unflatten(-1, (h, d)).transpose(1, 2)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )  # [N, h, L, d]
        gates = self.to_gates(x).sigmoid().unsqueeze(-1)  # [N, L, h, 1]
        # gates first: the product takes their layout, [N, L, h, d] contiguous, which to_out
        # reads without a copy (see RotaryEmbedding.rotate)
        out = gates * out.transpose(1, 2)
        return self.to_out(out.reshape(n, length, h * d))


class LinearAttention(nn.Module):
    """MSST's linear attention (XCiT's cross-covariance attention): per head, attention
    between the ``dim_head`` features over all tokens, with l2-normalised q and k, a learned
    temperature and scale 8. ``[N, L, dim] -> [N, L, dim]``."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dim_head, self.dropout = heads, dim_head, dropout
        inner = heads * dim_head
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Sequential(nn.Linear(dim, inner * 3, bias=False))
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        # MSST's to_out is (rearrange heads back into features, Linear): its rearrange is
        # done before to_out here, the Identity keeps the Linear's key (to_out.1)
        self.to_out = nn.Sequential(nn.Identity(), nn.Linear(inner, dim, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        h, d = self.heads, self.dim_head
        qkv = self.to_qkv(self.norm(x)).view(n, length, 3, h, d).permute(2, 0, 3, 4, 1)
        q, k, v = qkv.unbind(0)  # each [N, h, d, L]
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        q = q * self.temperature.exp()
        q = q * (LINEAR_ATTENTION_SCALE / length**-0.5)  # SDPA scales by length ** -0.5
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )  # [N, h, d, L]
        return self.to_out(out.permute(0, 3, 1, 2).reshape(n, length, h * d))


class TransformerLayer(nn.Module):
    """Attention + residual, then feed-forward + residual. ``[N, L, dim] -> [N, L, dim]``.
    The two parts keep MSST's keys, ``0`` (:attr:`attention`) and ``1``
    (:attr:`feed_forward`)."""

    def __init__(self, attention: Attention | LinearAttention, feed_forward: FeedForward):
        super().__init__()
        self.add_module("0", attention)
        self.add_module("1", feed_forward)

    @property
    def attention(self) -> Attention | LinearAttention:
        return getattr(self, "0")

    @property
    def feed_forward(self) -> FeedForward:
        return getattr(self, "1")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention(x) + x
        return self.feed_forward(x) + x


class Transformer(nn.Module):
    """``depth`` :class:`TransformerLayer` s, then an output RMSNorm (Mel) or none (BS).
    ``[N, L, dim] -> [N, L, dim]``. Without ``rotary_embed``: linear attention."""

    def __init__(
        self,
        config: RoformerConfig,
        depth: int,
        rotary_embed: RotaryEmbedding | None,
        norm_output: bool,
    ) -> None:
        super().__init__()
        c = config
        assert c.dim is not None
        self.layers = nn.ModuleList()
        for _ in range(depth):
            if rotary_embed is None:
                attn: nn.Module = LinearAttention(c.dim, c.heads, c.dim_head, c.attn_dropout)
            else:
                attn = Attention(c.dim, c.heads, c.dim_head, c.attn_dropout, rotary_embed)
            self.layers.append(TransformerLayer(attn, FeedForward(c.dim, c.ff_dropout)))
        self.norm = RMSNorm(c.dim) if norm_output else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class AxialBlock(nn.Module):
    """One of the network's ``depth`` blocks. ``[B, T, K, D] -> [B, T, K, D]``: a linear
    transformer over all T*K tokens (if ``linear_transformer_depth > 0``), then the outputs of
    ``earlier`` blocks added (``skip_connection``), a transformer over frames (one sequence
    per band) and one over bands (one sequence per frame).

    The transformers keep MSST's keys: ``0, 1, 2`` (linear, time, frequency), or ``0, 1``
    (time, frequency) without a linear one. ``checkpointed``: each transformer is recomputed
    in the backward pass (``use_torch_checkpoint``).
    """

    def __init__(
        self,
        linear_transformer: Transformer | None,
        time_transformer: Transformer,
        freq_transformer: Transformer,
        checkpointed: bool,
    ) -> None:
        super().__init__()
        parts = [time_transformer, freq_transformer]
        if linear_transformer is not None:
            parts.insert(0, linear_transformer)
        for i, part in enumerate(parts):
            self.add_module(str(i), part)
        self.first_axial = len(parts) - 2  # index of the time transformer
        self.checkpointed = checkpointed

    @property
    def linear_transformer(self) -> Transformer | None:
        return getattr(self, "0") if self.first_axial else None

    @property
    def time_transformer(self) -> Transformer:
        return getattr(self, str(self.first_axial))

    @property
    def freq_transformer(self) -> Transformer:
        return getattr(self, str(self.first_axial + 1))

    def forward(self, x: torch.Tensor, earlier: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        b, t, k, d = x.shape
        linear = self.linear_transformer
        if linear is not None:
            x = _maybe_checkpoint(self.checkpointed, linear, x.reshape(b, t * k, d))
            x = x.view(b, t, k, d)
        for skip in earlier:
            x = x + skip
        x = x.transpose(1, 2).contiguous().view(b * k, t, d)  # sequences of frames
        x = _maybe_checkpoint(self.checkpointed, self.time_transformer, x)
        x = x.view(b, k, t, d).transpose(1, 2).contiguous().view(b * t, k, d)  # of bands
        return _maybe_checkpoint(self.checkpointed, self.freq_transformer, x).view(b, t, k, d)


# --------------------------------------------------------------------------------------------
# Band layout: bands grouped by width
# --------------------------------------------------------------------------------------------
def _index(values: list[int]) -> torch.Tensor:
    """An index buffer, on the CPU whatever the default device (a model built on ``meta``)."""
    return torch.tensor(values, dtype=torch.long, device="cpu")


class BandGroups(nn.Module):
    """Bands of equal width gathered together.

    A band's input is its bins' values in the STFT layout ``(bin, channel, re/im)``: ``size =
    bins * C * 2`` columns of the ``[B, T, F*C*2]`` spectrogram. ``groups[g] = (bands,
    size)``: the band indices (ascending) of every band of that size, groups ordered by their
    first band. Per group, ``cols_g`` (buffer ``[count * size]``) are the columns of its bands,
    band after band; ``all_cols`` all groups' columns; ``flat`` the bands group after group
    and ``order`` its inverse (``in_order``: whether both are the identity).
    """

    def __init__(self, band_bins: Sequence[Sequence[int]], channels: int) -> None:
        super().__init__()
        by_size: dict[int, list[int]] = {}
        for band, bins in enumerate(band_bins):
            by_size.setdefault(len(bins) * channels * 2, []).append(band)
        self.groups = sorted(
            ((bands, size) for size, bands in by_size.items()), key=lambda g: g[0][0]
        )
        self.n_bands = len(band_bins)
        self.slices: list[tuple[int, int] | None] = []
        all_cols: list[int] = []
        for g, (bands, _) in enumerate(self.groups):
            cols = [
                (f * channels + s) * 2 + c
                for band in bands
                for f in band_bins[band]
                for s in range(channels)
                for c in range(2)
            ]
            all_cols += cols
            self.register_buffer(f"cols_{g}", _index(cols), persistent=False)
            contiguous = cols == list(range(cols[0], cols[0] + len(cols)))
            self.slices.append((cols[0], cols[0] + len(cols)) if contiguous else None)
        self.register_buffer("all_cols", _index(all_cols), persistent=False)
        flat = [band for bands, _ in self.groups for band in bands]
        self.register_buffer("flat", _index(flat), persistent=False)
        order = sorted(range(len(flat)), key=flat.__getitem__)
        self.register_buffer("order", _index(order), persistent=False)
        self.in_order = flat == list(range(self.n_bands))
        self.disjoint = sum(len(b) for b in band_bins) == len({f for b in band_bins for f in b})

    def gather(self, x: torch.Tensor, g: int) -> torch.Tensor:
        """Group ``g``'s columns of ``x [..., F*C*2]`` -> ``[..., count * size]``."""
        span = self.slices[g]
        if span is not None:
            return x[..., span[0] : span[1]]
        return x.index_select(-1, getattr(self, f"cols_{g}"))

    def to_band_order(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """Bands concatenated group after group (along ``dim``) -> band order."""
        return x if self.in_order else x.index_select(dim, self.order)

    def to_group_order(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """Bands in band order (along ``dim``) -> group after group."""
        return x if self.in_order else x.index_select(dim, self.flat)


# --------------------------------------------------------------------------------------------
# Band split
# --------------------------------------------------------------------------------------------
class BandSplitGroup(nn.Module):
    """``count`` bands of ``size`` inputs: RMSNorm(size) then Linear(size, dim) each.
    ``[B*T, count * size] -> [count, B*T, dim]``."""

    def __init__(self, count: int, size: int, dim: int) -> None:
        super().__init__()
        self.count, self.size, self.scale = count, size, size**0.5
        self.gamma = nn.Parameter(torch.ones(count, size))
        self.linear = StackedLinear(count, size, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, self.count, self.size)
        x = F.normalize(x, dim=-1) * (self.gamma * self.scale)
        return self.linear(x.transpose(0, 1))


class BandSplit(nn.Module):
    """``[B, T, F*C*2] -> [B, T, K, dim]``."""

    def __init__(self, bands: BandGroups, dim: int) -> None:
        super().__init__()
        self.bands = bands
        self.groups = nn.ModuleList(
            BandSplitGroup(len(idx), size, dim) for idx, size in bands.groups
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        x = x.reshape(b * t, -1)
        out = torch.cat([g(self.bands.gather(x, i)) for i, g in enumerate(self.groups)])
        out = self.bands.to_band_order(out, 0)  # [K, B*T, dim]
        return out.transpose(0, 1).reshape(b, t, self.bands.n_bands, -1)


# --------------------------------------------------------------------------------------------
# Mask estimators
# --------------------------------------------------------------------------------------------
class MaskEstimator(nn.Module):
    """One stem's masks: per band an MLP (``layers`` linear layers, Tanh between, hidden
    ``dim * mlp_expansion_factor``) to ``2 * size`` values, then GLU -> ``size`` mask values.

    Every layer but the last has one shape for all bands (``hidden``: stacked over the K
    bands); the last is stacked per band group (``out``).
    ``[K, B*T, dim] -> [B*T, sum of sizes]``, bands group after group (see
    :class:`BandGroups`).
    """

    def __init__(self, bands: BandGroups, dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.bands = bands
        dims = [dim] + [hidden] * (layers - 1)
        self.hidden = nn.ModuleList(
            StackedLinear(bands.n_bands, dims[i], dims[i + 1]) for i in range(layers - 1)
        )
        self.out = nn.ModuleList(
            StackedLinear(len(idx), dims[-1], 2 * size) for idx, size in bands.groups
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = layer(x).tanh()
        x = self.bands.to_group_order(x, 0)
        outs = []
        for layer, part in zip(self.out, x.split([len(i) for i, _ in self.bands.groups])):
            y = F.glu(layer(part), dim=-1)  # [count, B*T, size]
            outs.append(y.transpose(0, 1).reshape(y.shape[1], -1))
        return torch.cat(outs, -1)


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------
class Roformer(SeparationModel):
    """The core both RoFormers share. ``forward(mixture [B, C, samples]) -> ModelOutput``
    with ``waveforms [B, S, C, samples']`` (``samples' = samples`` except for Mel without
    ``match_input_audio_length``, see :class:`MelRoformerConfig`)."""

    config: RoformerConfig

    def __init__(self, config: RoformerConfig, mel: bool) -> None:
        super().__init__(config)
        c = config
        assert c.dim is not None and c.depth is not None
        self.mel = mel
        time_rotary, freq_rotary = RotaryEmbedding(c.dim_head), RotaryEmbedding(c.dim_head)
        self.layers = nn.ModuleList()
        for _ in range(c.depth):
            linear = None
            if c.linear_transformer_depth > 0:
                linear = Transformer(c, c.linear_transformer_depth, None, mel)
            time_tf = Transformer(c, c.time_transformer_depth, time_rotary, mel)
            freq_tf = Transformer(c, c.freq_transformer_depth, freq_rotary, mel)
            self.layers.append(AxialBlock(linear, time_tf, freq_tf, c.use_torch_checkpoint))
        self.final_norm = None if mel else RMSNorm(c.dim)
        band_bins = c.band_bins()
        groups = BandGroups(band_bins, c.channels)
        self.band_split = BandSplit(groups, c.dim)
        self.mask_estimators = nn.ModuleList(
            MaskEstimator(groups, c.dim, c.dim * c.mlp_expansion_factor, c.mask_layers())
            for _ in range(c.num_stems or 1)
        )
        self.band_groups = groups
        self.n_cols = c.n_bins * c.channels * 2
        if not groups.disjoint:  # Mel: each mask value is divided by the bands holding its bin
            bands_per_bin = torch.zeros(c.n_bins)
            for bins in band_bins:
                bands_per_bin[bins] += 1
            per_col = bands_per_bin.repeat_interleave(2 * c.channels).clamp(min=1e-8)
            self.register_buffer("bands_per_col", per_col, persistent=False)

    # -- interface -------------------------------------------------------------------------
    @property
    def stft_spec(self) -> StftSpec:
        c = self.config
        return StftSpec(c.stft_n_fft, c.stft_hop_length, c.stft_win_length, c.stft_normalized)

    @property
    def framing(self) -> Framing:
        """Mel without ``match_input_audio_length``: ``(frames - 1) * hop`` output samples."""
        short = self.mel and not self.config.match_input_audio_length
        return Framing(output_length="frames" if short else "input")

    @property
    def audio_channels(self) -> int:
        return self.config.channels

    @property
    def segment_samples(self) -> int | None:
        return self.config.segment

    @property
    def loss_preference(self) -> LossPreference:
        """MSST's loss: L1 on the waveform plus its multi-resolution STFT term with this
        config's ``multi_stft_*`` options."""
        c = self.config
        return LossPreference(
            type="L1",
            domain="t+mrstft",
            multi_resolution=MultiResolutionSpec(
                weight=c.multi_stft_resolution_loss_weight,
                window_sizes=c.multi_stft_resolutions_window_sizes,
                hop_size=c.multi_stft_hop_size,
                normalized=c.multi_stft_normalized,
            ),
        )

    # -- pieces ----------------------------------------------------------------------------
    def _blocks(self, x: torch.Tensor) -> torch.Tensor:
        """The ``depth`` :class:`AxialBlock` s. ``[B, T, K, D] -> [B, T, K, D]``."""
        outputs: list[torch.Tensor] = []  # the earlier blocks' (skip_connection)
        for block in self.layers:
            x = block(x, outputs)
            if self.config.skip_connection:
                outputs.append(x)
        return x

    def _overlap_add_bands(self, mask: torch.Tensor) -> torch.Tensor:
        """Band masks ``[N, sizes]`` (group order) summed into the spectrogram's columns ->
        ``[N, F*C*2]``. Exported graphs use ``scatter_add`` (ONNX ScatterElements with
        reduction add; the exporter's ``index_add`` overwrites repeated columns)."""
        cols = self.band_groups.all_cols
        out = mask.new_zeros(mask.shape[0], self.n_cols)
        if is_exporting():
            return out.scatter_add(1, cols.expand(mask.shape[0], -1), mask)
        return out.index_add_(1, cols, mask)

    def _masks(self, x: torch.Tensor) -> torch.Tensor:
        """Real/imag masks in the spectrogram's layout. ``[B, T, K, D] -> [B, S, T, F*C*2]``."""
        b, t, k, d = x.shape
        groups, ckpt = self.band_groups, self.config.use_torch_checkpoint
        x = x.reshape(b * t, k, d).transpose(0, 1).contiguous()  # [K, B*T, D]
        masks = []
        for estimator in self.mask_estimators:
            mask = _maybe_checkpoint(ckpt, estimator, x).float()  # [B*T, sizes], group order
            if not (groups.in_order and groups.disjoint):  # Mel: sum overlapping bands' masks
                mask = self._overlap_add_bands(mask)
            if not groups.disjoint:  # ... and divide by the bands per bin
                mask = mask / self.bands_per_col
            masks.append(mask.view(b, t, -1))
        return torch.stack(masks, 1)

    # -- the network ---------------------------------------------------------------------
    def check_mixture(self, mixture: torch.Tensor) -> None:
        c = self.config
        if mixture.dim() != 3 or mixture.shape[1] != c.channels:
            raise ValueError(
                f"expected a mixture [batch, {c.channels}, samples] (stereo={c.stereo}), got "
                f"{tuple(mixture.shape)}"
            )

    def core(self, spec: torch.Tensor) -> torch.Tensor:
        c = self.config
        batch, channels, n_bins, frames, _ = spec.shape
        spec_x = spec.permute(0, 3, 2, 1, 4).reshape(batch, frames, -1)  # [B, T, F*C*2]

        x = _maybe_checkpoint(c.use_torch_checkpoint, self.band_split, spec_x)  # [B, T, K, D]
        x = self._blocks(x)
        if self.final_norm is not None:
            x = self.final_norm(x)
        masks = self._masks(x)  # [B, S, T, F*C*2] float32

        stems = masks.shape[1]
        masks = masks.view(batch, stems, frames, n_bins, channels, 2)
        mix = spec_x.view(batch, 1, frames, n_bins, channels, 2)
        est = complex_mul(mix, masks).permute(0, 1, 4, 3, 2, 5)  # [B, S, C, F, T, 2]
        if c.zero_dc:
            est = est.index_fill(3, torch.zeros(1, dtype=torch.long, device=est.device), 0)
        return est


class BSRoformer(Roformer):
    """BS-RoFormer (MSST's ``bs_roformer``): contiguous bands, a final RMSNorm."""

    config: BSRoformerConfig

    def __init__(self, config: BSRoformerConfig) -> None:
        if not isinstance(config, BSRoformerConfig):
            raise TypeError(f"expected a BSRoformerConfig, got {type(config).__name__}")
        super().__init__(config, mel=False)


class MelRoformer(Roformer):
    """Mel-RoFormer (MSST's ``mel_band_roformer``): overlapping mel bands whose masks are
    averaged, an output RMSNorm in every transformer."""

    config: MelRoformerConfig

    def __init__(self, config: MelRoformerConfig) -> None:
        if not isinstance(config, MelRoformerConfig):
            raise TypeError(f"expected a MelRoformerConfig, got {type(config).__name__}")
        super().__init__(config, mel=True)
