"""bsrnn: Band-Split RNN music source separation."""

from bsrnn.model import BSRNN, ModelOutput

__all__ = ["BSRNN", "ModelOutput"]
__version__ = "0.1.0"
