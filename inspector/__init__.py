"""filter-inspector: open a trained Keras/TensorFlow model and see exactly what its layers learned.

    >>> import inspector
    >>> index = inspector.open_model("model.keras")      # no TensorFlow import, no weight bytes read
    >>> conv = index.layer("conv2")
    >>> conv.kernel.shape                                # (kh, kw, C_in, C_out)
"""

from ._version import __version__
from .errors import (
    CorruptModelError,
    InputDataError,
    InspectorError,
    LayerNotFoundError,
    MissingDependencyError,
    ModelFormatError,
    ModelNotRunnableError,
    NotAFilterLayerError,
    OutputPathError,
    SelectionError,
    UnsafeModelError,
    UnsupportedFormatError,
)
from .loader import open_model
from .records import FILTER_KINDS, KernelSpec, LayerKind, LayerRecord, ModelFormat, ModelIndex, TensorRef

__all__ = [
    "FILTER_KINDS",
    "CorruptModelError",
    "InputDataError",
    "InspectorError",
    "KernelSpec",
    "LayerKind",
    "LayerNotFoundError",
    "LayerRecord",
    "MissingDependencyError",
    "ModelFormat",
    "ModelFormatError",
    "ModelIndex",
    "ModelNotRunnableError",
    "NotAFilterLayerError",
    "OutputPathError",
    "SelectionError",
    "TensorRef",
    "UnsafeModelError",
    "UnsupportedFormatError",
    "__version__",
    "open_model",
]
