"""A plain per-band BS-/Mel-RoFormer as MSST computes it: the baseline for tests and benchmarks.

Written from the semantics of MSST's ``models/bs_roformer/bs_roformer.py`` and
``mel_band_roformer.py`` (``shared/MSST-ROFORMER.md``), the straightforward way: one module per
band in the band split and in every mask estimator with Python loops over the bands, one
rotary embedding module recomputing its angles per call and rotating q and k separately
(``rotate_half`` with a stack and a concatenation), separate q/k/v and gate projections,
layout changes as copies. Module names are MSST's, so MSST's state_dict loads into it with
``load_state_dict(strict=True)`` (and ``bsrnn.models.roformer_msst.state_dict_to_msst`` gives
it our model's weights).

``bsrnn.models.roformer`` (bands batched, one qkv+gate matmul) must compute the same function
(tests/test_roformer.py) and run faster (benchmarks/bench_model.py). Only torch is needed;
the Mel band membership ``[bands, bins]`` is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) * self.scale * self.gamma


class RotaryEmbedding(nn.Module):
    """rotary-embedding-torch's defaults: theta 10000, interleaved pairs."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        freqs = 1.0 / (10000 ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        self.freqs = nn.Parameter(freqs, requires_grad=False)

    @staticmethod
    def rotate_half(x: torch.Tensor) -> torch.Tensor:
        x = x.unflatten(-1, (-1, 2))
        x1, x2 = x.unbind(-1)
        return torch.stack((-x2, x1), dim=-1).flatten(-2)

    def rotate_queries_or_keys(self, t: torch.Tensor) -> torch.Tensor:
        n = t.shape[-2]
        pos = torch.arange(n, device=t.device, dtype=t.dtype).to(self.freqs.dtype)
        freqs = torch.einsum("..., f -> ... f", pos, self.freqs)
        freqs = freqs.repeat_interleave(2, dim=-1)
        rot = freqs.shape[-1]
        middle, right = t[..., :rot], t[..., rot:]
        out = middle * freqs.cos() + self.rotate_half(middle) * freqs.sin()
        return torch.cat((out, right), dim=-1).type(t.dtype)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
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


class Attention(nn.Module):
    def __init__(self, dim, heads, dim_head, dropout, rotary_embed) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        inner = heads * dim_head
        self.rotary_embed = rotary_embed
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_gates = nn.Linear(dim, heads)
        self.to_out = nn.Sequential(nn.Linear(inner, dim, bias=False), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        b, n, _ = x.shape
        qkv = self.to_qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [b, h, n, d]
        q = self.rotary_embed.rotate_queries_or_keys(q)
        k = self.rotary_embed.rotate_queries_or_keys(k)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )
        gates = self.to_gates(x)  # [b, n, h]
        out = out * gates.transpose(1, 2).unsqueeze(-1).sigmoid()
        out = out.transpose(1, 2).reshape(b, n, -1)
        return self.to_out(out)


class LinearAttention(nn.Module):
    def __init__(self, dim, heads, dim_head, dropout, scale: float = 8.0) -> None:
        super().__init__()
        self.heads, self.dropout, self.scale = heads, dropout, scale
        inner = heads * dim_head
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Sequential(nn.Linear(dim, inner * 3, bias=False))
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.to_out = nn.Sequential(nn.Identity(), nn.Linear(inner, dim, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        b, n, _ = x.shape
        qkv = self.to_qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 4, 1)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [b, h, d, n]
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        q = q * self.temperature.exp()
        q = q * (self.scale / q.shape[-1] ** -0.5)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )
        out = out.permute(0, 3, 1, 2).reshape(b, n, -1)
        return self.to_out(out)


class Transformer(nn.Module):
    def __init__(self, dim, depth, heads, dim_head, attn_dropout, ff_dropout, norm_output,
                 rotary_embed=None, linear_attn=False) -> None:  # fmt: skip
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(depth):
            if linear_attn:
                attn = LinearAttention(dim, heads, dim_head, attn_dropout)
            else:
                attn = Attention(dim, heads, dim_head, attn_dropout, rotary_embed)
            self.layers.append(nn.ModuleList([attn, FeedForward(dim, dropout=ff_dropout)]))
        self.norm = RMSNorm(dim) if norm_output else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return self.norm(x)


class BandSplit(nn.Module):
    def __init__(self, dim: int, dim_inputs: Sequence[int]) -> None:
        super().__init__()
        self.dim_inputs = list(dim_inputs)
        self.to_features = nn.ModuleList(
            nn.Sequential(RMSNorm(d), nn.Linear(d, dim)) for d in dim_inputs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.split(self.dim_inputs, dim=-1)
        return torch.stack([net(p) for p, net in zip(parts, self.to_features)], dim=-2)


def mlp(dim_in: int, dim_out: int, dim_hidden: int, n_linear: int) -> nn.Sequential:
    dims = [dim_in] + [dim_hidden] * (n_linear - 1) + [dim_out]
    layers: list[nn.Module] = []
    for i in range(n_linear):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < n_linear - 1:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class MaskEstimator(nn.Module):
    def __init__(self, dim, dim_inputs, n_linear, mlp_expansion_factor) -> None:
        super().__init__()
        hidden = dim * mlp_expansion_factor
        self.to_freqs = nn.ModuleList(
            nn.Sequential(mlp(dim, d * 2, hidden, n_linear), nn.GLU(dim=-1)) for d in dim_inputs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([net(band) for band, net in zip(x.unbind(-2), self.to_freqs)], dim=-1)


class PerBandRoformer(nn.Module):
    """MSST's ``BSRoformer`` (``mel=False``, ``freqs_per_bands``) or ``MelBandRoformer``
    (``mel=True``, ``membership [bands, bins]`` bool) with MSST's keyword arguments.
    ``forward(raw_audio [b, s, t]) -> [b, n, s, t']`` (never squeezed)."""

    def __init__(
        self,
        *,
        mel: bool,
        dim: int,
        depth: int,
        stereo: bool = False,
        num_stems: int = 1,
        time_transformer_depth: int = 2,
        freq_transformer_depth: int = 2,
        linear_transformer_depth: int = 0,
        freqs_per_bands: Sequence[int] | None = None,
        membership: torch.Tensor | None = None,
        dim_head: int = 64,
        heads: int = 8,
        attn_dropout: float = 0.0,
        ff_dropout: float = 0.0,
        stft_n_fft: int = 2048,
        stft_hop_length: int = 512,
        stft_win_length: int = 2048,
        stft_normalized: bool = False,
        zero_dc: bool = True,
        mask_estimator_depth: int = 2,
        mlp_expansion_factor: int = 4,
        skip_connection: bool = False,
        match_input_audio_length: bool = False,
    ) -> None:
        super().__init__()
        self.mel, self.stereo, self.zero_dc = mel, stereo, zero_dc
        self.audio_channels = 2 if stereo else 1
        self.skip_connection = skip_connection
        self.match_input_audio_length = match_input_audio_length
        kw = dict(dim=dim, heads=heads, dim_head=dim_head, attn_dropout=attn_dropout,
                  ff_dropout=ff_dropout, norm_output=mel)  # fmt: skip
        time_rotary, freq_rotary = RotaryEmbedding(dim_head), RotaryEmbedding(dim_head)
        self.layers = nn.ModuleList()
        for _ in range(depth):
            mods = []
            if linear_transformer_depth > 0:
                mods.append(Transformer(depth=linear_transformer_depth, linear_attn=True, **kw))
            mods.append(Transformer(depth=time_transformer_depth, rotary_embed=time_rotary, **kw))
            mods.append(Transformer(depth=freq_transformer_depth, rotary_embed=freq_rotary, **kw))
            self.layers.append(nn.ModuleList(mods))
        if not mel:
            self.final_norm = RMSNorm(dim)
        self.stft_kwargs = dict(n_fft=stft_n_fft, hop_length=stft_hop_length,
                                win_length=stft_win_length, normalized=stft_normalized)  # fmt: skip
        self.register_buffer("window", torch.hann_window(stft_win_length), persistent=False)
        if mel:
            assert membership is not None
            n_bins = membership.shape[1]
            freq_indices = torch.arange(n_bins).expand_as(membership)[membership]
            if stereo:
                freq_indices = (freq_indices[:, None] * 2 + torch.arange(2)).flatten()
            self.register_buffer("freq_indices", freq_indices, persistent=False)
            self.register_buffer("num_bands_per_freq", membership.sum(0), persistent=False)
            widths = membership.sum(1).tolist()
            n_linear = mask_estimator_depth + 1
        else:
            assert freqs_per_bands is not None
            widths = list(freqs_per_bands)
            n_linear = max(mask_estimator_depth, 1)
        dim_inputs = [2 * w * self.audio_channels for w in widths]
        self.band_split = BandSplit(dim, dim_inputs)
        self.mask_estimators = nn.ModuleList(
            MaskEstimator(dim, dim_inputs, n_linear, mlp_expansion_factor) for _ in range(num_stems)
        )

    def forward(self, raw_audio: torch.Tensor) -> torch.Tensor:
        b, s, t = raw_audio.shape
        spec = torch.stft(raw_audio.reshape(b * s, t), **self.stft_kwargs, window=self.window,
                          return_complex=True)  # fmt: skip
        spec = torch.view_as_real(spec)
        f, frames = spec.shape[1], spec.shape[2]
        spec = spec.view(b, s, f, frames, 2).permute(0, 2, 1, 3, 4).reshape(b, f * s, frames, 2)
        if self.mel:
            x = spec[torch.arange(b)[:, None], self.freq_indices]
        else:
            x = spec
        x = x.permute(0, 2, 1, 3).reshape(b, frames, -1)  # b t (f c)
        x = self.band_split(x)  # [b, t, k, d]
        store = []
        for i, block in enumerate(self.layers):
            if len(block) == 3:
                bb, tt, kk, dd = x.shape
                x = block[0](x.reshape(bb, tt * kk, dd)).view(bb, tt, kk, dd)
            time_tf, freq_tf = block[-2], block[-1]
            if self.skip_connection:
                for j in range(i):
                    x = x + store[j]
            bb, tt, kk, dd = x.shape
            x = x.permute(0, 2, 1, 3).reshape(bb * kk, tt, dd)
            x = time_tf(x)
            x = x.view(bb, kk, tt, dd).permute(0, 2, 1, 3).reshape(bb * tt, kk, dd)
            x = freq_tf(x).view(bb, tt, kk, dd)
            if self.skip_connection:
                store.append(x)
        if not self.mel:
            x = self.final_norm(x)
        masks = torch.stack([est(x) for est in self.mask_estimators], dim=1)  # b n t (f c)
        n = masks.shape[1]
        masks = masks.view(b, n, frames, -1, 2).permute(0, 1, 3, 2, 4)  # b n f t c
        stft_c = torch.view_as_complex(spec.contiguous())[:, None]  # b 1 (f s) t
        masks = torch.view_as_complex(masks.float().contiguous())
        if self.mel:
            idx = self.freq_indices.view(1, 1, -1, 1).expand(b, n, -1, frames)
            summed = torch.zeros_like(stft_c.expand(b, n, -1, -1)).scatter_add_(2, idx, masks)
            denom = self.num_bands_per_freq.repeat_interleave(s)[:, None]
            masks = summed / denom.clamp(min=1e-8)
        est = stft_c * masks  # b n (f s) t
        est = est.view(b, n, f, s, frames).permute(0, 1, 3, 2, 4).reshape(b * n * s, f, frames)
        if self.zero_dc:
            est = est.index_fill(1, torch.tensor(0, device=est.device), 0.0)
        length = t if (not self.mel or self.match_input_audio_length) else None
        wave = torch.istft(est, **self.stft_kwargs, window=self.window, length=length)
        return wave.view(b, n, s, -1)
