"""A plain per-band BSRNN, written the straightforward way: the baseline for benchmarks.

It loops in Python over the 30-55 bands for the band split and the mask decoder, keeps one
module per band, uses channels-first tensors with a transpose/copy around every sequence layer,
and names its modules as the reference implementation does (``BN.<band>``, ``separator.<block>
.time_net``, ``mask.<band>``), so the reference's state_dict loads into it unchanged. Our
``bsrnn.BSRNN`` must compute the same function (tests/test_model.py) and run faster
(benchmarks/bench_model.py).
"""

from __future__ import annotations

import torch
from torch import nn

from bsrnn.bands import band_widths


class _LayerNorm4D(nn.Module):
    """Normalise [B, D, T, K] over (D, K) per (B, T), affine per (D, K)."""

    def __init__(self, dim: int, n_bands: int, eps: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, dim, 1, n_bands))
        self.beta = nn.Parameter(torch.zeros(1, dim, 1, n_bands))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 3), keepdim=True)
        var = x.var(dim=(1, 3), unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.gamma + self.beta


def _conv_prelu_norm(n_in: int, n_out: int, n_bands: int, eps: float) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(n_in, n_out, 1), nn.PReLU(), _LayerNorm4D(n_out, n_bands, eps))


class _Attention(nn.Module):
    def __init__(self, n: int, n_bands: int, heads: int, enc_dim: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        for h in range(heads):
            self.add_module(f"attn_conv_Q_{h}", _conv_prelu_norm(n, enc_dim, n_bands, eps))
            self.add_module(f"attn_conv_K_{h}", _conv_prelu_norm(n, enc_dim, n_bands, eps))
            self.add_module(f"attn_conv_V_{h}", _conv_prelu_norm(n, n // heads, n_bands, eps))
        self.attn_concat_proj = _conv_prelu_norm(n, n, n_bands, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, T, K]
        b, n, t, k = x.shape
        outs = []
        for h in range(self.heads):
            q = getattr(self, f"attn_conv_Q_{h}")(x).transpose(1, 2).flatten(2)  # [B, T, E*K]
            kk = getattr(self, f"attn_conv_K_{h}")(x).transpose(1, 2).flatten(2)
            v = getattr(self, f"attn_conv_V_{h}")(x).transpose(1, 2)  # [B, T, N/h, K]
            scores = torch.softmax(q @ kk.transpose(1, 2) / q.shape[-1] ** 0.5, dim=-1)
            outs.append((scores @ v.flatten(2)).view(v.shape).transpose(1, 2))  # [B, N/h, T, K]
        return self.attn_concat_proj(torch.cat(outs, 1)) + x


class _Residual(nn.Module):
    def __init__(self, n: int, layer: str, eps: float) -> None:
        super().__init__()
        self.layer = layer
        self.norm = nn.GroupNorm(1, n, eps)
        if layer == "conv":
            self.main_layer = nn.Sequential(nn.Conv1d(n, 4 * n, 3, padding=1), nn.ReLU())
        else:
            rnn = nn.LSTM if layer == "lstm" else nn.GRU
            self.main_layer = rnn(n, 2 * n, 1, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(4 * n, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, L]
        y = self.norm(x)
        if self.layer == "conv":
            y = self.main_layer(y).transpose(1, 2)
        else:
            y, _ = self.main_layer(y.transpose(1, 2).contiguous())
        return x + self.proj(y).transpose(1, 2)


class _Block(nn.Module):
    def __init__(self, n, n_bands, time_layer, band_layer, heads, enc_dim, eps) -> None:
        super().__init__()
        self.time_net = _Residual(n, time_layer, eps)
        self.band_net = _Residual(n, band_layer, eps)
        self.heads = heads
        if heads:
            self.attn_block = _Attention(n, n_bands, heads, enc_dim, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, K, N, T]
        b, k, n, t = x.shape
        y = self.time_net(x.reshape(b * k, n, t)).view(b, k, n, t)
        y = y.permute(0, 3, 2, 1).reshape(b * t, n, k)
        y = self.band_net(y).view(b, t, n, k).permute(0, 3, 2, 1).contiguous()
        if self.heads:
            y = self.attn_block(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()
        return y


class PerBandBSRNN(nn.Module):
    """Same constructor and output as :class:`bsrnn.BSRNN`; per-band loops inside."""

    def __init__(
        self,
        target="vocals",
        feature_dim=64,
        num_repeat=8,
        time_layer="lstm",
        band_layer="lstm",
        n_att_head=0,
        attn_enc_dim=20,
        sample_rate=44100,
        n_fft=2048,
        n_hop=512,
        eps=1e-7,
    ) -> None:
        super().__init__()
        self.n_fft, self.n_hop = n_fft, n_hop
        self.widths = band_widths(target, sample_rate=sample_rate, n_fft=n_fft)
        n, k = feature_dim, len(self.widths)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.BN = nn.ModuleList(
            nn.Sequential(nn.GroupNorm(1, 2 * w, eps), nn.Conv1d(2 * w, n, 1)) for w in self.widths
        )
        self.separator = nn.Sequential(
            *(
                _Block(n, k, time_layer, band_layer, n_att_head, attn_enc_dim, eps)
                for _ in range(num_repeat)
            )
        )
        self.mask = nn.ModuleList(
            nn.Sequential(
                nn.GroupNorm(1, n, eps),
                nn.Conv1d(n, 4 * n, 1),
                nn.Tanh(),
                nn.Conv1d(4 * n, 4 * n, 1),
                nn.Tanh(),
                nn.Conv1d(4 * n, 4 * w, 1),
            )
            for w in self.widths
        )

    def forward(self, mixture: torch.Tensor) -> dict[str, torch.Tensor]:
        b, c, s = mixture.shape
        spec = torch.stft(
            mixture.reshape(b * c, s), self.n_fft, self.n_hop, window=self.window,
            return_complex=True,
        )  # fmt: skip
        feats, bands, f0 = [], [], 0
        for w, split in zip(self.widths, self.BN):
            band = spec[:, f0 : f0 + w]
            bands.append(band)
            feats.append(split(torch.cat([band.real, band.imag], 1)))
            f0 += w
        x = self.separator(torch.stack(feats, 1))  # [B', K, N, T]
        est = []
        for i, (w, dec) in enumerate(zip(self.widths, self.mask)):
            m = dec(x[:, i]).view(b * c, 2, 2, w, -1)
            m = m[:, 0] * torch.sigmoid(m[:, 1])
            est.append(bands[i] * torch.complex(m[:, 0], m[:, 1]))
        est = torch.cat(est, 1)
        wave = torch.istft(est, self.n_fft, self.n_hop, window=self.window, length=s)
        return {"waveforms": wave.view(b, 1, c, s), "stfts": est.view(b, 1, c, *est.shape[1:])}
