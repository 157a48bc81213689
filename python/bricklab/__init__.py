"""bricklab: find out where the time of a deep learning model goes, and cut it.

    >>> import bricklab
    >>> model = bricklab.load("models/bundled/resnet18.onnx", batch=8)
    >>> [(n.name, n.op, n.output_shape, n.flops) for n in model.nodes][:2]

Modules: ``bricklab.bricks`` (DLBricks: decompose, benchmark, predict), ``bricklab.lowerbound``
(Benanza: bounds, advice, the HTML report), ``bricklab.tensor`` (tensor recovery) and
``bricklab.soft`` (soft-training; needs PyTorch). Each is loaded on first use.

Errors are ``bricklab.Error`` subclasses: ``FileError`` (also an ``OSError``), ``MissingFileError``
(also a ``FileNotFoundError``), ``ModelFormatError``, ``UnsupportedError``, ``ShapeError``,
``ExternalDataError``, ``InvalidArgument`` (also a ``ValueError``), and
``bricks.MissingBricksError`` (also a ``LookupError``). A wrong argument type is a ``TypeError``.
Paths may be ``str`` or any ``os.PathLike``.
"""
import importlib as _importlib

from ._core import (  # noqa: F401
    Error,
    ExternalDataError,
    FileError,
    InvalidArgument,
    MissingFileError,
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
    memory_limit,
    set_memory_limit,
    supported_ops,
    usable_cpus,
    variants,
)

__all__ = [
    "load", "Model", "Node", "Value", "Session", "variants", "supported_ops", "backends", "usable_cpus",
    "memory_limit", "set_memory_limit",
    "Error", "FileError", "MissingFileError", "ModelFormatError", "UnsupportedError", "ShapeError", "ExternalDataError",
    "InvalidArgument", "__version__", "tensor", "bricks", "predict", "lowerbound", "soft",
]
from . import bricks  # noqa: F401
from .bricks import predict  # noqa: F401

_SUBMODULES = ("tensor", "lowerbound", "soft", "zoo")


def __getattr__(name: str):
    """``bricklab.lowerbound``, ``bricklab.soft``, ...: imported on first use (soft needs PyTorch)."""
    if name in _SUBMODULES:
        module = _importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'bricklab' has no attribute '{name}'")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))
