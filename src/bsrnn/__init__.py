"""bsrnn: Band-Split RNN music source separation.

``import bsrnn`` imports no torch: the model names below load on first use (``bsrnn.BSRNN``),
so torch-free modules (``bsrnn.onnx_runtime``, ``bsrnn.audio``, ``bsrnn.chunk_plan``) run on a
machine without PyTorch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BSRNN", "BSRNNConfig", "ModelOutput", "build_model"]
__version__ = "0.2.0"


def __getattr__(name: str) -> Any:
    if name in __all__:
        import bsrnn.models

        return getattr(bsrnn.models, name)
    raise AttributeError(f"module 'bsrnn' has no attribute {name!r}")
