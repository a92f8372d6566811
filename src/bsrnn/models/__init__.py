"""Separation networks: the model interface, the architectures and their registry."""

from bsrnn.models.base import (
    LossPreference,
    ModelConfig,
    ModelOutput,
    MultiResolutionSpec,
    SeparationModel,
    StftSpec,
    count_parameters,
)
from bsrnn.models.bsrnn import BSRNN, BSRNNConfig
from bsrnn.models.registry import (
    ARCHITECTURES,
    Architecture,
    arch_name,
    architecture,
    build_model,
    foreign_formats,
    model_config,
    register,
    registered,
    unregister,
)

__all__ = [
    "ARCHITECTURES",
    "BSRNN",
    "Architecture",
    "BSRNNConfig",
    "LossPreference",
    "ModelConfig",
    "ModelOutput",
    "MultiResolutionSpec",
    "SeparationModel",
    "StftSpec",
    "arch_name",
    "architecture",
    "build_model",
    "count_parameters",
    "foreign_formats",
    "model_config",
    "register",
    "registered",
    "unregister",
]
