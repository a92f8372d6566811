"""SCNet (Tong et al., ICASSP 2024, "Sparse Compression Network for Music Source Separation"),
number for number the networks of Music-Source-Separation-Training (MSST, ``models/scnet/``,
model types ``scnet`` and ``scnet_masked``), whose checkpoints load here unchanged (the
parameter names are MSST's; :mod:`bsrnn.models.scnet_msst` reads its YAML and files).

Data flow (B = batch, C = audio channels, S = stems, F = nfft/2+1 bins, T = frames,
D = ``dims``):

    mixture [B, C, samples]
      -> right pad so that the centred STFT has an even number of frames (the separation
         network halves the frames with an rFFT and restores them with an irFFT)
      -> STFT (``scnet``: rectangular window; ``scnet_masked``: periodic Hann)
                                                   [B, C, F, T, 2] = core's input
      -> channels (c0 re, c0 im, c1 re, c1 im)     [B, D0, F, T]  (+ ``pos_embed_f``: masked)
      -> encoder: len(D)-1 SD blocks, each: F split in three bands (low / mid / high by
         ``band_SR``), a strided Conv2d(kernel x 1) per band (``band_stride``: compression
         along F), a residual stack of 1-D convolutions over T per band (``conv_depths``),
         GELU; the bands concatenated are the skip; a 3x3 Conv2d   [B, D[i+1], F', T]
      -> separation network: ``num_dplayer`` dual-path layers (BiLSTM over F, then over T,
         each residual), alternately followed by an rFFT over T (re, im on channels: twice
         the channels, T/2+1 frames) and its inverse
      -> decoder (reverse order): skip added, fusion Conv2d + GLU, a ConvTranspose2d per band
         trimmed back to the band's length                 [B, S*C*2, F, T]
      -> ``scnet``: the stems' spectrograms; ``scnet_masked``: a Tanh mask head whose output
         multiplies the mixture's spectrogram (complex)    [B, S, C, F, T, 2] = core's output
      -> iSTFT, cropped to the input's length              waveforms [B, S, C, samples]

The three bands are a loop of three; nothing loops over frequencies or frames in Python.
Only torch is needed here.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

import bsrnn.checks as checks
from bsrnn.errors import ConfigError
from bsrnn.models.base import (
    Framing,
    LossPreference,
    ModelConfig,
    SeparationModel,
    StftSpec,
    is_exporting,
    option,
)
from bsrnn.models.mixed_precision import run_rnn

log = logging.getLogger(__name__)


#: MSST's default stems (``sources``) and channel widths.
MSST_SOURCES = ("drums", "bass", "other", "vocals")
#: MSST's ``audio.chunk_size`` of its MUSDB18 SCNet configs: 11 s at 44.1 kHz.
MSST_CHUNK = 485100


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SCNetConfig(ModelConfig):
    """Every option of MSST's ``SCNet`` constructor, named and defaulted as there (its
    ``sources`` are ``targets`` here).

    ``dims``: channel widths, ``dims[0] == 2 * audio_channels`` (re/im of each channel), then
    one SD block per following width. ``band_SR``: the low / mid / high share of the bins (the
    high band is what remains after the other two, as in MSST). ``band_stride`` /
    ``band_kernel``: the per-band down-sampling convolution. ``conv_depths``: residual 1-D
    convolution layers per band (``compress``: their channel reduction, ``conv_kernel``: their
    odd kernel). ``num_dplayer``: dual-path layers (even: each rFFT is undone), ``expand``:
    LSTM hidden size as a multiple of the channels. ``segment`` (a runtime option: it changes
    no weight and no output): the chunk length (samples) preferred for whole-track separation
    (MSST's ``audio.chunk_size``), or null.
    """

    targets: tuple[str, ...] = MSST_SOURCES
    audio_channels: int = 2
    dims: tuple[int, ...] = (4, 32, 64, 128)
    nfft: int = 4096
    hop_size: int = 1024
    win_size: int = 4096
    normalized: bool = True
    band_SR: tuple[float, ...] = (0.175, 0.392, 0.433)  # noqa: N815 (MSST's name)
    band_stride: tuple[int, ...] = (1, 4, 16)
    band_kernel: tuple[int, ...] = (3, 4, 16)
    conv_depths: tuple[int, ...] = (3, 2, 1)
    compress: int | float = 4
    conv_kernel: int = 3
    num_dplayer: int = 6
    expand: int = 1
    segment: int | None = option(MSST_CHUNK, role="runtime")

    #: MSST's ``model_type``.
    msst_model_type: ClassVar[str] = "scnet"
    #: MSST trains SCNet on the waveform (its quantile-masked MSE).
    default_loss_domain: ClassVar[str] = "t"

    def __post_init__(self) -> None:
        super().__post_init__()
        w = self.where
        three = "3 values (low, mid, high bands)"
        set_ = functools.partial(object.__setattr__, self)
        set_("band_SR", checks.numbers(f"{w}.band_SR", self.band_SR, length=3, expected=three))
        for key, minimum in (("band_stride", 1), ("band_kernel", 1), ("conv_depths", 0)):
            what = f"{three}, integers >= {minimum}"
            set_(
                key,
                checks.integers(
                    f"{w}.{key}", getattr(self, key), minimum=minimum, length=3, expected=what
                ),
            )
        checks.integer(
            f"{w}.audio_channels", self.audio_channels, minimum=1, maximum=2, expected="1 or 2"
        )
        dims = checks.integers(
            f"{w}.dims", self.dims, minimum=1, expected="a list of at least 2 widths >= 1"
        )
        if len(dims) < 2:
            checks.fail(f"{w}.dims", list(dims), "a list of at least 2 widths >= 1")
        set_("dims", dims)
        if self.dims[0] != 2 * self.audio_channels:
            raise ConfigError(
                f"{w}.dims[0]={self.dims[0]} must be 2 * audio_channels = "
                f"{2 * self.audio_channels} (re/im per channel)"
            )
        if self.num_dplayer < 0 or self.num_dplayer % 2:
            checks.fail(
                f"{w}.num_dplayer",
                self.num_dplayer,
                "an even number >= 0 (each rFFT over frames is undone by the next layer)",
            )
        for key in ("nfft", "hop_size", "win_size", "conv_kernel", "expand"):
            checks.integer(f"{w}.{key}", getattr(self, key), minimum=1)
        checks.integer(
            f"{w}.win_size", self.win_size, maximum=self.nfft, expected=f"at most nfft={self.nfft}"
        )
        if self.conv_kernel % 2 == 0:
            checks.fail(f"{w}.conv_kernel", self.conv_kernel, "an odd size")
        if self.compress <= 0 or int(min(self.dims[1:]) / self.compress) < 1:
            checks.fail(
                f"{w}.compress", self.compress, "a number with every dims[1:] / compress >= 1"
            )
        low, mid, high = self.band_SR
        if low <= 0 or mid <= 0 or low + mid >= 1:
            checks.fail(
                f"{w}.band_SR",
                list(self.band_SR),
                "low, mid > 0 with low + mid < 1 (the high band is the rest)",
            )
        if abs(low + mid + high - 1.0) > 1e-6:
            log.warning(
                "%s.band_SR=%s does not sum to 1: the high band is 1 - low - mid = %.4f, as in "
                "MSST",
                w,
                list(self.band_SR),
                1 - low - mid,
            )
        checks.integer(
            f"{w}.segment",
            self.segment,
            minimum=self.nfft,
            optional=True,
            expected=f"at least nfft={self.nfft} samples",
        )
        self.band_layout()  # every band of every block non-empty, and restored by the decoder

    @property
    def n_bins(self) -> int:
        return self.nfft // 2 + 1

    def band_edges(self, bins: int) -> list[tuple[int, int]]:
        """The (start, end) bins of the low / mid / high bands of ``bins`` bins (MSST's
        rounding: ``ceil`` of the shares)."""
        low, mid = self.band_SR[0], self.band_SR[1]
        a, b = math.ceil(bins * low), math.ceil(bins * (low + mid))
        return [(0, a), (a, b), (b, bins)]

    def band_layout(self) -> list[tuple[list[int], list[int]]]:
        """Per SD block: the bins of its three input bands and of its three output bands
        (ConfigError when a band is empty or the decoder cannot give it back its length)."""
        bins, layout = self.n_bins, []
        for block in range(len(self.dims) - 1):
            lengths, outs = [], []
            for (start, end), stride, kernel in zip(
                self.band_edges(bins), self.band_stride, self.band_kernel
            ):
                n = end - start
                padded = n + _band_padding(n, stride, kernel)
                out = (padded - kernel) // stride + 1 if n > 0 and padded >= kernel else 0
                if out < 1 or (out - 1) * stride + kernel < n:
                    raise ConfigError(
                        f"{self.where}.band_SR / band_stride / band_kernel leave SD block {block} "
                        f"a band of {n} bin(s) it cannot compress and restore (nfft={self.nfft})"
                    )
                lengths.append(n)
                outs.append(out)
            layout.append((lengths, outs))
            bins = sum(outs)
        return layout


@dataclass(frozen=True)
class SCNetMaskedConfig(SCNetConfig):
    """MSST's ``scnet_masked``: SCNet with a learned frequency embedding on its input and a
    Tanh mask head multiplying the mixture's spectrogram (a Hann window). Stereo only: the mask
    head's width is MSST's hard-coded 4 per stem."""

    msst_model_type: ClassVar[str] = "scnet_masked"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.audio_channels != 2:
            raise ConfigError(
                f"invalid {self.where}.audio_channels={self.audio_channels}: scnet_masked is "
                "stereo only (MSST's mask head has 4 channels per stem)"
            )
        if self.win_size != self.nfft:
            raise ConfigError(
                f"{self.where}.win_size={self.win_size} must equal nfft={self.nfft} in "
                "scnet_masked (its Hann window has nfft samples)"
            )


def _band_padding(n: int, stride: int, kernel: int) -> int:
    """Bins MSST pads a band of ``n`` bins with before its down-sampling convolution."""
    return kernel - 1 if stride == 1 else (stride - n % stride) % stride


# --------------------------------------------------------------------------------------------
# Encoder and decoder
# --------------------------------------------------------------------------------------------
class ConvolutionModule(nn.Module):
    """Residual 1-D convolution layers over frames. ``[N, C, T] -> [N, C, T]``."""

    def __init__(self, channels: int, depth: int, compress: float, kernel: int) -> None:
        super().__init__()
        hidden = int(channels / compress)
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.GroupNorm(1, channels),
                nn.Conv1d(channels, 2 * hidden, kernel, padding=kernel // 2),
                nn.GLU(1),
                nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden),
                nn.GroupNorm(1, hidden),
                nn.SiLU(),
                nn.Conv1d(hidden, channels, 1),
            )
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x + layer(x)
        return x


class BandDownsample(nn.Module):
    """The three bands' strided convolutions along F (MSST's ``SDlayer``).
    ``[B, Cin, F, T] -> three [B, Cout, f_i, T]``."""

    def __init__(self, c_in: int, c_out: int, config: SCNetConfig) -> None:
        super().__init__()
        self.config = config
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, (k, 1), (s, 1))
            for s, k in zip(config.band_stride, config.band_kernel)
        )

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[int]]:
        c = self.config
        outs, lengths = [], []
        for conv, (start, end), stride, kernel in zip(
            self.convs, c.band_edges(x.shape[2]), c.band_stride, c.band_kernel
        ):
            pad = _band_padding(end - start, stride, kernel)
            band = F.pad(x[:, :, start:end], (0, 0, pad // 2, pad - pad // 2))
            outs.append(conv(band))
            lengths.append(end - start)
        return outs, lengths


class SDBlock(nn.Module):
    """One encoder block. ``[B, Cin, F, T] -> (out [B, Cout, F', T], skip [B, Cout, F', T],
    band lengths after (3) and before (3) compression)``."""

    def __init__(self, c_in: int, c_out: int, config: SCNetConfig) -> None:
        super().__init__()
        self.SDlayer = BandDownsample(c_in, c_out, config)  # noqa: N815 (MSST's key)
        self.conv_modules = nn.ModuleList(
            ConvolutionModule(c_out, depth, config.compress, config.conv_kernel)
            for depth in config.conv_depths
        )
        self.globalconv = nn.Conv2d(c_out, c_out, 3, 1, 1)

    def forward(self, x: torch.Tensor):
        bands, original = self.SDlayer(x)
        done = []
        for conv, band in zip(self.conv_modules, bands):
            b, ch, f, t = band.shape
            y = conv(band.transpose(1, 2).reshape(b * f, ch, t))  # frequencies as batch items
            done.append(F.gelu(y.view(b, f, ch, t).transpose(1, 2)))
        skip = torch.cat(done, 2)
        return self.globalconv(skip), skip, [band.shape[2] for band in done], original


class FusionLayer(nn.Module):
    """Skip added, channels doubled, 3x3 Conv2d, GLU. ``[B, C, F, T] -> [B, C, F, T]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * channels, 2 * channels, 3, 1, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = x + skip
        return F.glu(self.conv(torch.cat([x, x], 1)), dim=1)


class BandUpsample(nn.Module):
    """Per band a ConvTranspose2d along F, trimmed symmetrically to the band's original
    length (MSST's ``SUlayer``). ``[B, Cin, F', T] -> [B, Cout, F, T]``."""

    def __init__(self, c_in: int, c_out: int, config: SCNetConfig) -> None:
        super().__init__()
        self.convtrs = nn.ModuleList(
            nn.ConvTranspose2d(c_in, c_out, (k, 1), (s, 1))
            for s, k in zip(config.band_stride, config.band_kernel)
        )

    def forward(self, x: torch.Tensor, lengths: list[int], original: list[int]) -> torch.Tensor:
        outs, start = [], 0
        for convtr, n, n_orig in zip(self.convtrs, lengths, original):
            y = convtr(x[:, :, start : start + n])
            start += n
            cut = abs(n_orig - y.shape[2]) // 2
            outs.append(y[:, :, cut : cut + n_orig])
        return torch.cat(outs, 2)


class DecoderBlock(nn.Module):
    """One decoder block: :class:`FusionLayer` with the encoder's skip, then
    :class:`BandUpsample`. ``[B, C, F', T] -> [B, Cout, F, T]``. Its parts keep MSST's keys
    (``0``: :attr:`fusion`, ``1``: :attr:`upsample`; MSST holds them in an ``nn.Sequential``)."""

    def __init__(self, channels: int, c_out: int, config: SCNetConfig) -> None:
        super().__init__()
        self.add_module("0", FusionLayer(channels))
        self.add_module("1", BandUpsample(channels, c_out, config))

    @property
    def fusion(self) -> FusionLayer:
        return getattr(self, "0")

    @property
    def upsample(self) -> BandUpsample:
        return getattr(self, "1")

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor, lengths: list[int], original: list[int]
    ) -> torch.Tensor:
        """``lengths`` / ``original``: the bands' lengths after / before the encoder block's
        down-sampling (see :class:`SDBlock`)."""
        return self.upsample(self.fusion(x, skip), lengths, original)


# --------------------------------------------------------------------------------------------
# Separation network
# --------------------------------------------------------------------------------------------
class DualPathRNN(nn.Module):
    """A BiLSTM over F (per frame) then one over T (per bin), each after a GroupNorm, with a
    Linear back to ``channels`` and a residual. ``[B, C, F, T] -> [B, C, F, T]``."""

    def __init__(self, channels: int, expand: int) -> None:
        super().__init__()
        hidden = channels * expand
        self.lstm_layers = nn.ModuleList(
            nn.LSTM(channels, hidden, batch_first=True, bidirectional=True) for _ in range(2)
        )
        self.linear_layers = nn.ModuleList(nn.Linear(2 * hidden, channels) for _ in range(2))
        self.norm_layers = nn.ModuleList(nn.GroupNorm(1, channels) for _ in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape
        y = self.norm_layers[0](x).permute(0, 3, 2, 1).reshape(b * t, f, c)  # over F
        y = self.linear_layers[0](run_rnn(self.lstm_layers[0], y))
        x = x + y.view(b, t, f, c).permute(0, 3, 2, 1)
        y = self.norm_layers[1](x).permute(0, 2, 3, 1).reshape(b * f, t, c)  # over T
        y = self.linear_layers[1](run_rnn(self.lstm_layers[1], y))
        return x + y.view(b, f, t, c).permute(0, 3, 1, 2)


class SeparationNet(nn.Module):
    """``num_layers`` dual-path layers; after the even-numbered ones an rFFT over T (re and
    im stacked on channels), after the odd ones its inverse. ``[B, C, F, T] -> [B, C, F, T]``
    (T even)."""

    def __init__(self, channels: int, expand: int, num_layers: int) -> None:
        super().__init__()
        self.dp_modules = nn.ModuleList(
            DualPathRNN(channels * (2 if i % 2 else 1), expand) for i in range(num_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        exporting = is_exporting()
        for i, layer in enumerate(self.dp_modules):
            x = layer(x).float()
            if i % 2 == 0:
                if exporting:  # ONNX has no rFFT operator: the same transform as matmuls
                    x = torch.cat(_rfft_ortho_matmul(x), 1)
                else:
                    spec = torch.fft.rfft(x, dim=3, norm="ortho")
                    x = torch.cat([spec.real, spec.imag], 1)
            else:
                half = x.shape[1] // 2
                if exporting:
                    x = _irfft_ortho_matmul(x[:, :half], x[:, half:])
                else:
                    spec = torch.complex(x[:, :half], x[:, half:])
                    x = torch.fft.irfft(spec, dim=3, norm="ortho")
        return x


def _dft_angles(n: int, bins: int, device: torch.device) -> torch.Tensor:
    """``2 pi (k t mod n) / n`` for ``t < n``, ``k < bins`` -> ``[n, bins]`` float32 (the
    product reduced in integers first, so the angle stays accurate for long inputs)."""
    t = torch.arange(n, device=device)
    k = torch.arange(bins, device=device)
    return (torch.remainder(t[:, None] * k[None, :], n).float() * (2 * math.pi)) / n


def _rfft_ortho_matmul(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.fft.rfft(x, dim=3, norm="ortho")`` as real matmuls (for the ONNX export):
    ``[B, C, F, T] -> (real, imag)``, each ``[B, C, F, T // 2 + 1]``."""
    n = x.shape[3]
    angles = _dft_angles(n, n // 2 + 1, x.device)
    scale = torch.rsqrt(torch.ones_like(x[:1, :1, :1]).sum())  # 1 / sqrt(n), traced with n
    return (x @ torch.cos(angles)) * scale, (x @ -torch.sin(angles)) * scale


def _irfft_ortho_matmul(real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
    """``torch.fft.irfft(complex(real, imag), dim=3, norm="ortho")`` as real matmuls (for the
    ONNX export): ``[B, C, F, K]`` each -> ``[B, C, F, 2 (K - 1)]``. The imaginary parts of
    the DC and Nyquist bins are ignored, as irfft does."""
    bins = real.shape[3]
    n = 2 * (bins - 1)
    angles = _dft_angles(n, bins, real.device).transpose(0, 1)  # [K, n]
    weight = torch.full((bins, 1), 2.0, device=real.device)
    weight[0] = 1.0
    weight[-1] = 1.0
    scale = torch.rsqrt(2.0 * (torch.ones_like(real[:1, :1, :1]).sum() - 1.0))
    return (real @ (weight * torch.cos(angles)) - imag @ (weight * torch.sin(angles))) * scale


# --------------------------------------------------------------------------------------------
# The networks
# --------------------------------------------------------------------------------------------
class SCNet(SeparationModel):
    """MSST's ``scnet``. ``forward(mixture [B, C, samples]) -> ModelOutput`` with
    ``waveforms [B, S, C, samples]``; :meth:`core` maps the mixture's spectrogram to the
    stems'."""

    config: SCNetConfig
    masked: ClassVar[bool] = False

    def __init__(self, config: SCNetConfig) -> None:
        if not isinstance(config, SCNetConfig) or (
            isinstance(config, SCNetMaskedConfig) != self.masked
        ):
            expected = "SCNetMaskedConfig" if self.masked else "SCNetConfig"
            raise TypeError(f"expected a {expected}, got {type(config).__name__}")
        super().__init__(config)
        c, dims, stems = config, config.dims, len(config.targets)
        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in range(len(dims) - 1):
            self.encoder.append(SDBlock(dims[i], dims[i + 1], c))
            out = dims[i] * stems if i == 0 else dims[i]
            self.decoder.insert(0, DecoderBlock(dims[i + 1], out, c))
        self.separation_net = SeparationNet(dims[-1], c.expand, c.num_dplayer)
        if self.masked:
            self.pos_embed_f = nn.Parameter(torch.zeros(1, dims[0], c.n_bins, 1))
            nn.init.trunc_normal_(self.pos_embed_f, std=0.02)
            self.mask_layer = nn.Sequential(
                nn.Conv2d(4 * stems, 64, 3, padding="same"),
                nn.GELU(),
                nn.Conv2d(64, 4 * stems, 1),
                nn.Tanh(),
            )

    # -- interface -------------------------------------------------------------------------
    @property
    def stft_spec(self) -> StftSpec:
        """``scnet``: no window (torch's rectangular default, as MSST calls torch.stft);
        ``scnet_masked``: a periodic Hann window."""
        c = self.config
        window = "hann" if self.masked else "rect"
        return StftSpec(c.nfft, c.hop_size, c.win_size, c.normalized, window=window)

    @property
    def audio_channels(self) -> int:
        return self.config.audio_channels

    @property
    def segment_samples(self) -> int | None:
        return self.config.segment

    @property
    def framing(self) -> Framing:
        """MSST pads the input to an even frame count and crops the output back."""
        return Framing(pad_to_even_frames=True, output_length="input")

    @property
    def loss_preference(self) -> LossPreference:
        """MSST's loss for SCNet: the quantile-masked MSE on the waveform (q 0.95, coarse)."""
        return LossPreference(type="masked_mse", domain="t", q=0.95, coarse=True)

    # -- computation -----------------------------------------------------------------------
    def core(self, spec: torch.Tensor) -> torch.Tensor:
        """Mixture spectrogram ``[B, C, F, T, 2]`` (T even) -> stems ``[B, S, C, F, T, 2]``."""
        b, ch, f, t, _ = spec.shape
        stems = len(self.config.targets)
        x = spec.permute(0, 1, 4, 2, 3).reshape(b, 2 * ch, f, t)  # (c0 re, c0 im, c1 re, ...)
        if self.masked:
            x = x + self.pos_embed_f[:, :, :f]
        skips = []
        for block in self.encoder:
            x, skip, lengths, original = block(x)
            skips.append((skip, lengths, original))
        x = self.separation_net(x)
        for block, (skip, lengths, original) in zip(self.decoder, reversed(skips)):
            x = block(x, skip, lengths, original)
        if self.masked:
            mask = self.mask_layer(x).view(b, stems, ch, 2, f, t)
            mix = spec.permute(0, 1, 4, 2, 3)[:, None]  # [B, 1, C, 2, F, T]
            re = mix[:, :, :, 0] * mask[:, :, :, 0] - mix[:, :, :, 1] * mask[:, :, :, 1]
            im = mix[:, :, :, 0] * mask[:, :, :, 1] + mix[:, :, :, 1] * mask[:, :, :, 0]
            return torch.stack([re, im], -1)
        return x.view(b, stems, ch, 2, f, t).permute(0, 1, 2, 4, 5, 3)


class SCNetMasked(SCNet):
    """MSST's ``scnet_masked``: a frequency embedding on the input, a Tanh mask head, the
    stems as mask x mixture (complex), a Hann window."""

    config: SCNetMaskedConfig
    masked: ClassVar[bool] = True
