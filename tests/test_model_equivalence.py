"""Our batched BSRNN computes the reference's newest network, option by option.

1. The plain per-band baseline (tests/reference/per_band_baseline.py, written from the architecture
   description) reproduces every checkpoint that the reference's own code wrote, newest and
   seed versions: the baseline is the reference's network.
2. For option combinations covering every option, the baseline with random weights (norms,
   PReLU slopes and all) mapped by ``convert_reference_state_dict`` onto ``build_model`` of
   the same options gives the same outputs and has as many trainable parameters.
3. ``convert_reference_state_dict`` refuses a state_dict with an extra or a missing weight.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bsrnn.errors import CheckpointError
from bsrnn.models import build_model, count_parameters
from bsrnn.models.bsrnn_checkpoints import convert_reference_state_dict
from tests.reference.per_band_baseline import PerBandBSRNN

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
NEWEST = ["vocals-opt", "bass-opt-notac", "other-naive", "simo-opt"]
SEED_VERSION = ["vocals-lstm-lstm", "bass-gru-conv"]
TOL = 2e-6  # of the peak
FOUR = ["vocals", "bass", "drums", "other"]


def _rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours - ref).abs().max() / ref.abs().max()).item()


# --------------------------------------------------------------------------------------------
# 1. The baseline reproduces the reference's own checkpoints
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "folder,name",
    [("reference-newest", n) for n in NEWEST] + [("reference-ckpt", n) for n in SEED_VERSION],
)
def test_baseline_reproduces_reference_checkpoint(folder, name):
    path = FIXTURES / folder / f"{name}.ckpt"
    if not path.is_file():
        pytest.fail(f"reference fixture not found: {path}")
    baseline = PerBandBSRNN.from_reference_checkpoint(path)
    io = torch.load(path.with_suffix(".io.pt"), weights_only=True)
    with torch.no_grad():
        out = baseline(io["mixture"])
    for key in ("waveforms", "stfts"):
        assert out[key].shape == io[key].shape, key
        err = _rel_err(out[key], io[key])
        print(f"{name} {key}: max error {err:.2e} of the peak")
        assert err <= TOL, f"{name} {key}: {err:.2e} of the peak"


# --------------------------------------------------------------------------------------------
# 2. Our network equals the baseline for every option
# --------------------------------------------------------------------------------------------
def _options(**overrides) -> dict:
    return {"targets": ["vocals"], "feature_dim": 8, "num_repeat": 1, **overrides}


CASES = {
    "mono-lstm-lstm": _options(num_repeat=2),
    "gru-conv-heads2-groups2": _options(
        targets=["bass"], time_layer="gru", band_layer="conv", n_heads=2, group_num=2
    ),
    "conv-lstm-unidir-facsep1": _options(
        targets=["drums"], time_layer="conv", band_layer="lstm", bidirectional=False, fac_sep=1
    ),
    "lstm-gru-heads4-unidir": _options(
        targets=["other"], band_layer="gru", n_heads=4, bidirectional=False, fac_sep=3
    ),
    "naive": _options(targets=["other"], stereo="naive", num_repeat=2),
    "tac-prelu": _options(stereo="tac", act_tac="prelu", num_repeat=2),
    "tac-tanh-fac2": _options(targets=["bass"], stereo="tac", act_tac="tanh", fac_tac=2),
    "attn2x4-tac-prelu": _options(
        targets=["drums"], stereo="tac", act_tac="prelu", n_att_head=2, attn_enc_dim=4,
        num_repeat=2,
    ),
    "attn1x3-heads2-no-tac": _options(n_att_head=1, attn_enc_dim=3, n_heads=2, time_layer="gru"),
    "fac_mask2-ctxt1": _options(fac_mask=2, mask_ctxt=1),
    "naive-ctxt2-attn4-heads2": _options(
        targets=["bass"], stereo="naive", mask_ctxt=2, n_att_head=4, attn_enc_dim=2, n_heads=2,
        time_layer="gru", band_layer="conv",
    ),
    "simo-subtract": _options(targets=FOUR, subtract_last_trgt=True),
    "simo-no-subtract": _options(targets=FOUR, subtract_last_trgt=False),
    "simo-opt-like": _options(
        targets=FOUR, stereo="tac", act_tac="prelu", n_att_head=2, attn_enc_dim=4,
        subtract_last_trgt=True, mask_ctxt=1,
    ),
    "simo-naive-2targets": _options(targets=["bass", "vocals"], stereo="naive", fac_mask=1),
    "joint-bandsplit-single": _options(targets=["drums"], joint_bandsplit=True),
    "single-target-ignores-subtract": _options(targets=["bass"], subtract_last_trgt=True),
}  # fmt: skip


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Uniform random values in every parameter, norms and PReLU slopes included (so that no
    mapping error hides behind a default 1, 0 or 0.25). A tied parameter gets one value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) * 0.6 - 0.3 + (p == 1).float())


@pytest.mark.parametrize("case", list(CASES))
def test_ours_equals_per_band_baseline(case):
    options = CASES[case]
    baseline = PerBandBSRNN(**options).eval()
    _randomise(baseline, seed=len(case))
    state = baseline.state_dict()
    for key in [k for k in state if k.endswith("tac_module.transform.1.weight")]:
        tied = [state[key.replace("transform", stage)] for stage in ("average", "concat")]
        assert all(torch.equal(state[key], t) for t in tied)  # one slope under three keys
        assert not torch.equal(state[key], torch.tensor([0.25]))
    ours = build_model(options).eval()
    ours.load_state_dict(convert_reference_state_dict(state, ours))
    assert count_parameters(ours) == count_parameters(baseline)

    gen = torch.Generator().manual_seed(7)
    x = 0.1 * torch.randn(2, 2, int(0.4 * 44100), generator=gen)
    with torch.no_grad():
        ref, out = baseline(x), ours(x)
    n_t = len(options["targets"])
    assert ref["waveforms"].shape == (2, n_t, 2, x.shape[-1])
    for key in ("waveforms", "stfts"):
        assert out[key].shape == ref[key].shape, key
        err = _rel_err(out[key], ref[key])
        print(f"{case} {key}: max error {err:.2e} of the peak")
        assert err <= TOL, f"{case} {key}: {err:.2e} of the peak"


# Full-size parameter counts that the reference's own code gives (REFERENCE-NEWEST.md §12),
# built on the meta device (no memory, no init cost).
FULL_SIZE_COUNTS = [
    ({"targets": ["vocals"]}, 8_020_296),
    ({"targets": ["bass"]}, 7_111_432),
    ({"targets": ["drums"]}, 9_177_032),
    ({"targets": ["vocals"], "stereo": "naive"}, 9_209_296),
    ({"targets": ["vocals"], "stereo": "naive", "fac_mask": 8}, 20_062_160),
    ({"targets": ["vocals"], "n_heads": 2, "num_repeat": 4}, 5_011_528),
    (
        {"targets": ["vocals"], "feature_dim": 128, "num_repeat": 12, "stereo": "tac",
         "act_tac": "prelu", "n_att_head": 2, "attn_enc_dim": 16},
        40_777_192,
    ),
    (
        {"targets": ["bass"], "feature_dim": 128, "num_repeat": 12, "n_att_head": 2,
         "attn_enc_dim": 16},
        33_523_036,
    ),
    ({"targets": FOUR, "subtract_last_trgt": True}, 20_861_520),
    ({"targets": FOUR}, 26_621_140),
    (
        {"targets": FOUR, "feature_dim": 128, "num_repeat": 12, "stereo": "tac",
         "act_tac": "prelu", "n_att_head": 2, "attn_enc_dim": 16},
        108_727_540,
    ),
]  # fmt: skip


@pytest.mark.parametrize("options,expected", FULL_SIZE_COUNTS)
def test_full_size_parameter_counts(options, expected):
    with torch.device("meta"):
        assert count_parameters(PerBandBSRNN(**options)) == expected
        assert count_parameters(build_model(options)) == expected


# --------------------------------------------------------------------------------------------
# 3. Every reference weight used, none invented
# --------------------------------------------------------------------------------------------
def _small_reference_state() -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
    options = _options(stereo="tac", act_tac="prelu", n_att_head=1, attn_enc_dim=2)
    return dict(PerBandBSRNN(**options).state_dict()), build_model(options)


def test_convert_refuses_an_extra_reference_key():
    state, ours = _small_reference_state()
    state["separator.0.time_net.extra_layer.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"separator\.0\.time_net\.extra_layer\.weight"):
        convert_reference_state_dict(state, ours)


@pytest.mark.parametrize(
    "key",
    ["maskers.0.mask.3.5.bias", "BN.40.0.weight", "separator.0.attn_block.attn_conv_V_0.2.gamma",
     "separator.0.tac_module.average.0.bias"],
)  # fmt: skip
def test_convert_refuses_a_missing_reference_key(key):
    state, ours = _small_reference_state()
    del state[key]
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        convert_reference_state_dict(state, ours)


def test_convert_refuses_untied_tac_slopes():
    state, ours = _small_reference_state()
    state["separator.0.tac_module.concat.1.weight"] = torch.tensor([0.5])
    with pytest.raises(CheckpointError, match="tac|TAC"):
        convert_reference_state_dict(state, ours)
