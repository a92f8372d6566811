"""A plain per-band BSRNN of the reference's newest version: the baseline for tests and benchmarks.

Written from the architecture description (``shared/REFERENCE-NEWEST.md``), the straightforward
way: one module per band, Python loops over the 30-57 bands in the band split and in every mask
decoder, channels-first tensors with a transpose around every sequence layer, and the
reference's module names (``BN.<band>``, ``separator.<block>.{time_net,band_net,tac_module,
attn_block}``, ``maskers.<target>.mask.<band>``, ``stft.transf.window``), so the reference's
state_dict loads into it with ``load_state_dict(strict=True)``. Every option of the newest
version is here: one or several targets (SIMO), heads, GroupNorm groups, hidden factor,
directions, lstm/gru/conv layers, naive or TAC stereo, attention, mask decoder width and
context, ``subtract_last_trgt``.

Our ``bsrnn.models.BSRNN`` (bands batched, parameters stacked) must compute the same function
(tests/test_model_equivalence.py) and run faster (benchmarks/bench_model.py). Nothing here
comes from ``bsrnn.models``; only torch is needed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
from torch import nn

LAYERS = ("lstm", "gru", "conv")

#: Band layouts, low to high: (number of bands, bandwidth in Hz). One last band takes the rest.
LAYOUTS: dict[str, tuple[tuple[int, int], ...]] = {
    "vocals": ((10, 100), (12, 250), (8, 500), (8, 1000), (2, 2000)),
    "other": ((10, 100), (12, 250), (8, 500), (8, 1000), (2, 2000)),
    "bass": ((10, 50), (5, 100), (6, 500), (4, 1000), (4, 2000)),
    "drums": ((20, 50), (10, 100), (8, 250), (8, 500), (8, 1000)),
}
#: The finer split shared by all targets: several targets, ``joint_bandsplit``, or an unknown one.
JOINT = ((20, 50), (10, 100), (8, 250), (8, 500), (8, 1000), (2, 2000))


def split_widths(target: str, joint: bool, sample_rate: int, n_fft: int) -> list[int]:
    """Band widths in bins: ``floor(hz * F / (sr / 2))`` per band, the last band the rest."""
    n_bins = n_fft // 2 + 1
    ratio = n_bins / (sample_rate / 2)
    layout = JOINT if joint or target not in LAYOUTS else LAYOUTS[target]
    widths = [int(math.floor(hz * ratio)) for count, hz in layout for _ in range(count)]
    widths.append(n_bins - sum(widths))
    return widths


# ------------------------------------------------------------------------------------------
# STFT front end with the reference's buffer names (stft.transf.window, istft.transf.window)
# ------------------------------------------------------------------------------------------
class _Window(nn.Module):
    def __init__(self, n_fft: int) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True))


class _Spectrogram(nn.Module):
    def __init__(self, n_fft: int, n_hop: int) -> None:
        super().__init__()
        self.n_fft, self.n_hop = n_fft, n_hop
        self.transf = _Window(n_fft)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, L] -> [B, F, T] complex
        return torch.stft(
            x, self.n_fft, self.n_hop, window=self.transf.window, center=True,
            pad_mode="reflect", normalized=False, onesided=True, return_complex=True,
        )  # fmt: skip


class _InverseSpectrogram(_Spectrogram):
    def forward(self, spec: torch.Tensor, length: int) -> torch.Tensor:  # [B, F, T] -> [B, L]
        return torch.istft(
            spec, self.n_fft, self.n_hop, window=self.transf.window, center=True,
            normalized=False, onesided=True, length=length,
        )  # fmt: skip


# ------------------------------------------------------------------------------------------
# Separator pieces
# ------------------------------------------------------------------------------------------
class ResNet(nn.Module):
    """GroupNorm -> LSTM/GRU or Conv1d(k=3)+ReLU -> Linear -> + input, on ``[batch, n, L]``."""

    def __init__(self, n: int, layer: str, fac_sep: int, bidirectional: bool, groups: int, eps):
        super().__init__()
        if layer not in LAYERS:
            raise ValueError(f"unknown sequence layer {layer!r}: expected one of {LAYERS}")
        self.layer = layer
        dirs = 2 if bidirectional else 1
        hidden = n * fac_sep
        self.norm = nn.GroupNorm(groups, n, eps)
        if layer == "conv":
            self.main_layer = nn.Sequential(nn.Conv1d(n, hidden * dirs, 3, padding=1), nn.ReLU())
        else:
            rnn = nn.LSTM if layer == "lstm" else nn.GRU
            self.main_layer = rnn(
                n, hidden, num_layers=1, batch_first=True, bidirectional=bidirectional
            )
        self.proj = nn.Linear(hidden * dirs, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        if self.layer == "conv":
            y = self.main_layer(y).transpose(1, 2)
        else:
            y, _ = self.main_layer(y.transpose(1, 2).contiguous())
        return x + self.proj(y).transpose(1, 2)


class TAC(nn.Module):
    """Transform-average-concatenate across channels; ``[b, C, N] -> [b, C, N]``, residual.

    ``prelu``: ONE PReLU instance used after all three linears (the reference ties the slope;
    its state_dict holds the tensor under ``{transform,average,concat}.1.weight``).
    """

    def __init__(self, n: int, fac_tac: int, act: str) -> None:
        super().__init__()
        hidden = fac_tac * n
        if act == "tanh":
            shared = nn.Tanh()
        elif act == "prelu":
            shared = nn.PReLU()
        else:
            raise ValueError(f"unknown act_tac {act!r}: expected tanh or prelu")
        self.transform = nn.Sequential(nn.Linear(n, hidden), shared)
        self.average = nn.Sequential(nn.Linear(hidden, hidden), shared)
        self.concat = nn.Sequential(nn.Linear(2 * hidden, n), shared)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        v = self.transform(z)  # [.., C, Hd]
        r = self.average(v.mean(dim=-2, keepdim=True)).expand_as(v)
        return z + self.concat(torch.cat([v, r], dim=-1))


class LayerNorm4DCF(nn.Module):
    """Normalise ``[B, D, T, K]`` over (D, K) per (B, T); affine ``[1, D, 1, K]``."""

    def __init__(self, dim: int, n_bands: int, eps: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, dim, 1, n_bands))
        self.beta = nn.Parameter(torch.zeros(1, dim, 1, n_bands))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 3), keepdim=True)
        var = ((x - mean) ** 2).mean(dim=(1, 3), keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.gamma + self.beta


def _conv_prelu_norm(n_in: int, n_out: int, n_bands: int, eps: float) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(n_in, n_out, 1), nn.PReLU(), LayerNorm4DCF(n_out, n_bands, eps))


class Attention(nn.Module):
    """Self-attention over frames, all bands flattened into the embedding; ``[B, N, T, K]``."""

    def __init__(self, n: int, n_bands: int, heads: int, enc_dim: int, eps: float) -> None:
        super().__init__()
        if n % heads:
            raise ValueError(f"feature_dim {n} is not divisible by n_att_head {heads}")
        self.heads = heads
        for h in range(heads):
            self.add_module(f"attn_conv_Q_{h}", _conv_prelu_norm(n, enc_dim, n_bands, eps))
            self.add_module(f"attn_conv_K_{h}", _conv_prelu_norm(n, enc_dim, n_bands, eps))
            self.add_module(f"attn_conv_V_{h}", _conv_prelu_norm(n, n // heads, n_bands, eps))
        self.attn_concat_proj = _conv_prelu_norm(n, n, n_bands, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, k = x.shape
        outs = []
        for h in range(self.heads):
            q = getattr(self, f"attn_conv_Q_{h}")(x)  # [B, E, T, K]
            kk = getattr(self, f"attn_conv_K_{h}")(x)
            v = getattr(self, f"attn_conv_V_{h}")(x)  # [B, N/Ha, T, K]
            d = v.shape[1]
            q = q.transpose(1, 2).reshape(b, t, -1)  # [B, T, E*K], E outer
            kk = kk.transpose(1, 2).reshape(b, t, -1)
            scores = torch.softmax(q @ kk.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
            y = scores @ v.transpose(1, 2).reshape(b, t, -1)  # [B, T, d*K]
            outs.append(y.reshape(b, t, d, k).transpose(1, 2))
        return self.attn_concat_proj(torch.cat(outs, dim=1)) + x


class BSNet(nn.Module):
    """Head split -> time ResNet -> band ResNet -> head merge -> TAC -> attention.

    ``[B', K, N, T] -> [B', K, N, T]``.
    """

    def __init__(self, n_bands: int, opts: dict) -> None:
        super().__init__()
        n, self.n_heads = opts["feature_dim"], opts["n_heads"]
        if n % self.n_heads:
            raise ValueError(f"feature_dim {n} is not divisible by n_heads {self.n_heads}")
        head = n // self.n_heads
        args = (opts["fac_sep"], opts["bidirectional"], opts["group_num"], opts["eps"])
        self.time_net = ResNet(head, opts["time_layer"], *args)
        self.band_net = ResNet(head, opts["band_layer"], *args)
        self.channels = opts["nb_channels"]
        # created in the reference's order (attention first), although TAC runs first
        if opts["n_att_head"] > 0:
            self.attn_block = Attention(
                n, n_bands, opts["n_att_head"], opts["attn_enc_dim"], opts["eps"]
            )
        if opts["stereo"] == "tac":
            self.tac_module = TAC(n, opts["fac_tac"], opts["act_tac"])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, k, n, t = z.shape
        h = self.n_heads
        # heads: contiguous feature chunks become batch items (index b*H + h)
        x = z.reshape(b, k, h, n // h, t).permute(0, 2, 1, 3, 4).reshape(b * h, k, n // h, t)
        x = self.time_net(x.reshape(b * h * k, n // h, t)).reshape(b * h, k, n // h, t)
        x = x.permute(0, 3, 2, 1).reshape(b * h * t, n // h, k)
        x = self.band_net(x).reshape(b * h, t, n // h, k).permute(0, 3, 2, 1)
        x = x.reshape(b, h, k, n // h, t).permute(0, 2, 1, 3, 4).reshape(b, k, n, t)
        if hasattr(self, "tac_module"):
            c = self.channels
            y = x.reshape(b // c, c, k, n, t).permute(0, 2, 4, 1, 3)  # [b, K, T, C, N]
            y = self.tac_module(y)
            x = y.permute(0, 3, 1, 4, 2).reshape(b, k, n, t)
        if hasattr(self, "attn_block"):
            x = self.attn_block(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x.contiguous()


class Masker(nn.Module):
    """One target's per-band mask estimators (``mask.<band>``) and the masking itself."""

    def __init__(
        self, widths: Sequence[int], n: int, fac_mask: int, out_ch: int, ctxt: int, eps: float
    ) -> None:
        super().__init__()
        self.widths, self.out_ch, self.ctxt = list(widths), out_ch, ctxt
        m = fac_mask * n
        self.mask = nn.ModuleList(
            nn.Sequential(
                nn.GroupNorm(1, n, eps),
                nn.Conv1d(n, m, 1),
                nn.Tanh(),
                nn.Conv1d(m, m, 1),
                nn.Tanh(),
                nn.Conv1d(m, 4 * w * out_ch, 1),
            )
            for w in self.widths
        )

    def forward(self, z: torch.Tensor, bands: list[torch.Tensor]) -> torch.Tensor:
        """``z [B', K, N, T]``, ``bands[i] [B, 2, w_i, T]`` (real, imag) -> ``[B, F, T]``."""
        out = []
        for i, w in enumerate(self.widths):
            x_r, x_i = bands[i][:, 0], bands[i][:, 1]
            y = self.mask[i](z[:, i])  # [B', 4*w*o, T]
            y = y.reshape(x_r.shape[0], 2, 2, w, y.shape[-1])  # (value/gate, real/imag, bin)
            mask = y[:, 0] * torch.sigmoid(y[:, 1])
            m_r, m_i = mask[:, 0], mask[:, 1]
            est = torch.complex(x_r * m_r - x_i * m_i, x_r * m_i + x_i * m_r)  # [B, w, T]
            if self.ctxt > 0:
                c = self.ctxt
                padded = torch.zeros(
                    est.shape[0], w + 2 * c, est.shape[-1], dtype=est.dtype, device=est.device
                )
                padded[:, c : c + w] = est
                est = sum(padded[:, j : j + w] for j in range(2 * c + 1))
            out.append(est)
        return torch.cat(out, dim=1)


# ------------------------------------------------------------------------------------------
# The network
# ------------------------------------------------------------------------------------------
class PerBandBSRNN(nn.Module):
    """The reference's newest BSRNN, loop over bands; state_dict keys are the reference's.

    ``forward(x [b, C, L])`` -> ``{"waveforms": [b, n_t, C, L], "stfts": [b, n_t, C, F, T]}``.
    """

    def __init__(
        self,
        targets: Sequence[str] | str = ("vocals",),
        feature_dim: int = 64,
        num_repeat: int = 8,
        time_layer: str = "lstm",
        band_layer: str = "lstm",
        n_heads: int = 1,
        group_num: int = 1,
        fac_sep: int = 2,
        bidirectional: bool = True,
        n_att_head: int = 0,
        attn_enc_dim: int = 16,
        stereo: str | None = None,
        fac_tac: int = 3,
        act_tac: str = "tanh",
        fac_mask: int = 4,
        mask_ctxt: int = 0,
        joint_bandsplit: bool = False,
        subtract_last_trgt: bool = False,
        nb_channels: int = 2,
        sample_rate: int = 44100,
        n_fft: int = 2048,
        n_hop: int = 512,
        eps: float = 1e-7,
        target: str | None = None,
    ) -> None:
        super().__init__()
        if target is not None:
            targets = (target,)
        self.targets = [targets] if isinstance(targets, str) else list(targets)
        self.stereo = stereo if stereo in ("naive", "tac") else None
        self.nb_channels = nb_channels
        self.sample_rate, self.n_fft, self.n_hop = sample_rate, n_fft, n_hop
        self.subtract_last = bool(subtract_last_trgt) and len(self.targets) > 1
        joint = bool(joint_bandsplit) or len(self.targets) > 1
        self.widths = split_widths(self.targets[0], joint, sample_rate, n_fft)
        n, k = feature_dim, len(self.widths)
        opts = dict(
            feature_dim=n, n_heads=n_heads, group_num=group_num, fac_sep=fac_sep,
            bidirectional=bidirectional, time_layer=time_layer, band_layer=band_layer,
            n_att_head=n_att_head, attn_enc_dim=attn_enc_dim, stereo=self.stereo,
            fac_tac=fac_tac, act_tac=act_tac, nb_channels=nb_channels, eps=eps,
        )  # fmt: skip

        self.stft = _Spectrogram(n_fft, n_hop)
        self.istft = _InverseSpectrogram(n_fft, n_hop)
        fused = nb_channels if self.stereo == "naive" else 1
        self.BN = nn.ModuleList(
            nn.Sequential(nn.GroupNorm(1, 2 * w * fused, eps), nn.Conv1d(2 * w * fused, n, 1))
            for w in self.widths
        )
        self.separator = nn.Sequential(*(BSNet(k, opts) for _ in range(num_repeat)))
        n_maskers = len(self.targets) - int(self.subtract_last)
        self.maskers = nn.ModuleList(
            Masker(self.widths, n, fac_mask, fused, mask_ctxt, eps) for _ in range(n_maskers)
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b, c, length = x.shape
        if self.stereo is not None and c != self.nb_channels:
            raise ValueError(f"stereo={self.stereo} needs {self.nb_channels} channels, got {c}")
        spec = self.stft(x.reshape(b * c, length))  # [B, F, T], row b*C + c
        ri = torch.stack([spec.real, spec.imag], dim=1)  # [B, 2, F, T]
        bands, feats, f0 = [], [], 0
        for w, bn in zip(self.widths, self.BN):
            band = ri[:, :, f0 : f0 + w]  # [B, 2, w, T]
            bands.append(band)
            if self.stereo == "naive":
                flat = band.reshape(b, c * 2 * w, -1)  # channel = c*2w + ri*w + f
            else:
                flat = band.reshape(b * c, 2 * w, -1)  # channel = ri*w + f
            feats.append(bn(flat))
            f0 += w
        z = self.separator(torch.stack(feats, dim=1))  # [B', K, N, T]
        est = [masker(z, bands) for masker in self.maskers]  # each [B, F, T]
        if self.subtract_last:
            est.append(spec - sum(est))
        stfts = torch.stack(est, dim=1)  # [B, n_t, F, T]
        n_t, n_f, n_frames = stfts.shape[1:]
        wave = self.istft(stfts.reshape(b * c * n_t, n_f, n_frames), length)
        return {
            "waveforms": wave.reshape(b, c, n_t, length).transpose(1, 2),
            "stfts": stfts.reshape(b, c, n_t, n_f, n_frames).transpose(1, 2),
        }

    @classmethod
    def from_reference_checkpoint(cls, path: str | os.PathLike) -> PerBandBSRNN:
        """The baseline built from a reference Lightning file's ``hyper_parameters`` and loaded
        with its ``state_dict`` (``strict=True``); the seed version's files too (``target``,
        ``mask.<band>``, its defaults gru/conv/attn_enc_dim 20)."""
        # weights_only=False is acceptable here only: this is a benchmark/test helper that reads
        # the project's own fixtures (their hyper_parameters hold OmegaConf objects). Never use
        # it on a file from elsewhere; bsrnn.checkpoints reads such files safely.
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        hparams = dict(ckpt["hyper_parameters"])
        for key in ("cfg_optim", "cfg_scheduler", "cfg_eval", "name", "name_out_dir",
                    "name_tblog_dir", "out_dir"):  # fmt: skip
            hparams.pop(key, None)
        state = dict(ckpt["state_dict"])
        if "target" in hparams:  # the seed version: one target; `targets` is the eval list
            hparams.pop("targets", None)
            hparams["targets"] = [hparams.pop("target")]
            for key, value in (("time_layer", "gru"), ("band_layer", "conv"), ("attn_enc_dim", 20)):
                hparams.setdefault(key, value)
            state = {
                ("maskers.0." + k if k.startswith("mask.") else k): v for k, v in state.items()
            }
        targets = hparams.pop("targets")
        targets = [targets] if isinstance(targets, str) else [str(t) for t in targets]
        model = cls(targets=targets, **hparams)
        model.load_state_dict(state, strict=True)
        return model.eval()
