"""bricklab: find out where the time of a deep learning model goes, and cut it.

    >>> import bricklab
    >>> model = bricklab.load("models/bundled/resnet18.onnx", batch=8)
    >>> [(n.name, n.op, n.output_shape, n.flops) for n in model.nodes][:2]

Errors are ``bricklab.Error`` subclasses: ``FileError`` (also an ``OSError``), ``ModelFormatError``,
``UnsupportedError``, ``ShapeError``, ``ExternalDataError`` and ``InvalidArgument`` (also a
``ValueError``).
"""
from ._core import (  # noqa: F401
    Error,
    ExternalDataError,
    FileError,
    InvalidArgument,
    Model,
    ModelFormatError,
    Node,
    Session,
    ShapeError,
    UnsupportedError,
    Value,
    __version__,
    backends,
    load,
    supported_ops,
    usable_cpus,
    variants,
)

__all__ = [
    "load", "Model", "Node", "Value", "Session", "variants", "supported_ops", "backends", "usable_cpus",
    "Error", "FileError", "ModelFormatError", "UnsupportedError", "ShapeError", "ExternalDataError",
    "InvalidArgument", "__version__", "tensor", "bricks", "predict", "soft",
]
from . import tensor  # noqa: F401
from . import bricks  # noqa: F401
from .bricks import predict  # noqa: F401
# bricklab.soft (needs PyTorch) is imported on demand: import bricklab.soft
