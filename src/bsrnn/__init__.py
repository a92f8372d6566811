"""bsrnn: Band-Split RNN music source separation."""

from bsrnn.models import BSRNN, BSRNNConfig, ModelOutput, build_model

__all__ = ["BSRNN", "BSRNNConfig", "ModelOutput", "build_model"]
__version__ = "0.2.0"
