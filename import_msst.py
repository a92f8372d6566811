"""Import a BS-RoFormer, Mel-RoFormer or SCNet checkpoint of MSST
(Music-Source-Separation-Training) into a model folder of this project.

    python import_msst.py CONFIG.yaml CHECKPOINT OUT_DIR [--model-type bs_roformer]

MSST's YAML does not name the model type: an SCNet config is told from a RoFormer's by its
options (``dims``, ``band_SR``, ``num_dplayer``, ...; the RoFormers need ``dim`` and
``depth``), ``scnet_masked`` from ``scnet`` by the checkpoint's keys (its frequency embedding
and mask head), a Mel-RoFormer from a BS-RoFormer by options and keys; ``--model-type``
overrides.

CONFIG.yaml is MSST's config for the checkpoint (its ``model:`` section is the network's
options; ``!!python/tuple`` is read safely); CHECKPOINT its weights, a plain ``state_dict`` or
one wrapped as ``state_dict`` / ``model_state_dict`` / ``state`` (fp16 or fp32). The network
is rebuilt, its weights checked key by key, and written as one self-describing checkpoint into
OUT_DIR (``<target>.ckpt`` for one stem, ``separator.ckpt`` for several): the stems come from
``training.instruments``, or ``training.target_instrument`` for one. Then:

    python inference.py model_dir=OUT_DIR +file_path=song.wav +rec_dir=stems/
    python evaluate.py model_dir=OUT_DIR
    bsrnn-separate -m OUT_DIR song.mp3
    python train.py src_mod=bs-roformer ckpt_path=OUT_DIR/vocals.ckpt     # fine-tune
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bsrnn.cli import run_entry

log = logging.getLogger("import_msst")


def import_msst(
    config: str | Path, checkpoint: str | Path, out_dir: str | Path, model_type: str | None = None
) -> Path:
    """Convert MSST's ``config`` + ``checkpoint`` into ``out_dir``; returns the written path."""
    from bsrnn.checkpoints import save_model
    from bsrnn.errors import ConfigError
    from bsrnn.models import count_parameters, roformer_msst, scnet_msst
    from bsrnn.paths import checkpoint_path

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"OUT_DIR={out_dir} is an existing file: expected a folder")
    yaml_dict = roformer_msst.read_msst_yaml(config)
    if model_type in scnet_msst.MODEL_TYPES or (
        model_type is None and scnet_msst.is_scnet_section(yaml_dict["model"])
    ):
        model = scnet_msst.load_msst_model(config, checkpoint, model_type, yaml_dict)
    else:
        model = roformer_msst.load_msst_model(config, checkpoint, model_type)
    path = checkpoint_path(out_dir, model.targets)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, path)
    log.info(
        "%s (%s, %s parameters, stems %s) -> %s",
        checkpoint,
        model.config.msst_model_type,
        f"{count_parameters(model):,}",
        ", ".join(model.targets),
        path,
    )
    return path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="import_msst.py",
        description="Import an MSST BS-RoFormer / Mel-RoFormer / SCNet checkpoint into a model "
        "folder.",
    )
    parser.add_argument("config", help="MSST's YAML config of the checkpoint")
    parser.add_argument("checkpoint", help="the checkpoint (.ckpt / .pth)")
    parser.add_argument("out_dir", help="the model folder to write")
    parser.add_argument(
        "--model-type",
        choices=("bs_roformer", "mel_band_roformer", "scnet", "scnet_masked"),
        help="MSST's model_type (default: from the config's keys)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    return run_entry(
        "import_msst.py",
        lambda: import_msst(args.config, args.checkpoint, args.out_dir, args.model_type),
    )


if __name__ == "__main__":
    main()
