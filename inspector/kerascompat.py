"""The one module that imports TensorFlow/Keras and the one place that touches Keras private APIs.

Why it exists:

* **Same results on every x86-64 CPU.** TensorFlow's default (Eigen) CPU kernels refuse some layers
  that its oneDNN kernels run: convolutions in NCHW (``channels_first``) and transposed convolutions
  with ``dilation_rate > 1``. TensorFlow turns oneDNN on by default only on some processors, so the
  same model runs on one machine and fails on the next. We therefore (1) turn oneDNN on before
  TensorFlow is imported unless the user chose otherwise (``TF_ENABLE_ONEDNN_OPTS``), and (2) run
  every layer through :func:`call`, which falls back to an XLA-compiled call when the eager kernel
  is missing on this CPU. XLA lowers those convolutions itself, so the fallback is exact (Keras's own
  TensorFlow backend uses the same trick for grouped and 3-D channels_first convolutions).
* **Quiet start-up.** Importing TensorFlow writes C++/absl lines straight to file descriptor 2
  (``cudart_stub.cc ... Could not find cuda drivers``, ``All log messages before
  absl::InitializeLog() ...``) before any Python logging exists. We silence TensorFlow's C++ log
  (``TF_CPP_MIN_LOG_LEVEL=3`` unless the user set it) and hold descriptor 2 during the import; what
  was written there is replayed only if the import fails. :func:`set_verbose` (the CLI's
  ``--debug``) turns all of this off.
* **Private Keras APIs in one place.** Capturing inner layers in one pass walks a Functional graph
  with ``Function._run_through_graph``; the Keras 2 compatibility rebuild uses the legacy config
  loader. Those names live in ``keras.src`` and may move between Keras releases; everything that
  touches them is here, pinned by ``tests/test_kerascompat.py``.

Nothing here runs at ``import inspector``: TensorFlow is imported on the first call that needs it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import tempfile
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "EAGER_PASS_BYTES", "activation_bytes", "call", "deserialize", "eager_batch", "first_line", "functional_graph",
    "import_keras", "input_operation_name",
    "is_backend_error", "legacy_model_from_config", "prepare_environment", "run_graph", "set_verbose",
    "set_xla_variant", "standardize_inputs", "uses_xla_fallback",
]

_VERBOSE = False

# TensorFlow errors that mean "no kernel for this on this device", as opposed to bad input. Both
# cases come as these types; the fallback tells them apart by trying XLA and, if XLA fails too,
# raising the original error.
_FALLBACK_ERRORS = ("UnimplementedError", "InvalidArgumentError")


def set_verbose(verbose: bool) -> None:
    """For front ends (CLI, dashboard): show everything TensorFlow says, or only our own lines.

    ``True`` (the CLI's ``--debug``) lets TensorFlow's C++ log, its start-up lines and Python
    warnings through. ``False`` also silences Python warnings and TensorFlow's Python logger, which
    would otherwise print Keras's advice (``UserWarning: The structure of inputs ...``) around our
    one-line result; library users who never call this keep their own warning settings. Call it
    before anything imports TensorFlow.
    """
    global _VERBOSE
    _VERBOSE = bool(verbose)
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    warnings.simplefilter("ignore")
    for name in ("tensorflow", "absl", "keras"):
        logging.getLogger(name).setLevel(logging.ERROR)


def prepare_environment() -> None:
    """Settings TensorFlow reads once, at import: set them before it is imported, never override the user's."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if not _VERBOSE:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@contextlib.contextmanager
def _held_stderr() -> Iterator[None]:
    """Redirect file descriptor 2 to a temporary file; replay it only if the block raises."""
    if _VERBOSE:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor 2 (embedded interpreters): nothing to hold
        yield
        return
    with tempfile.TemporaryFile() as hold:
        os.dup2(hold.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            hold.seek(0)
            sys.stderr.write(hold.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_keras() -> Any:
    """``keras`` with TensorFlow prepared (oneDNN, quiet start-up); imports it on the first call."""
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return sys.modules["keras"]
    prepare_environment()
    with _held_stderr():
        import keras
        import tensorflow  # noqa: F401  (the noisy import, done here on purpose)
    return keras


def _tf() -> Any:
    import_keras()
    return sys.modules["tensorflow"]


# -- running layers on any CPU --------------------------------------------------------------------------

# Callables that needed the XLA path once: later calls go straight there (no failed eager attempt).
_compiled: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
#: Functions that bring their own whole-XLA version (see :func:`set_xla_variant`).
_variants: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def set_xla_variant(fn: Any, variant: Any) -> None:
    """Use ``variant`` (an XLA-compiled ``tf.function``) when :func:`call` falls back for ``fn``.

    Needed where ``fn`` is itself a ``tf.function``: wrapping it in a compiled function reuses its
    already-traced graph, and a graph that nests compiled parts of its own hides static shapes from XLA.
    """
    _variants[fn] = variant


def is_backend_error(exc: BaseException) -> bool:
    """Whether ``exc`` is TensorFlow's own runtime error (a kernel failed), not ours or Python's."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(exc, tf.errors.OpError)


def first_line(exc: BaseException) -> str:
    """The informative line of a TensorFlow error (Keras wraps it in a multi-line, coloured message)."""
    text = getattr(exc, "message", None) or str(exc)
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    for ln in lines:  # the kernel's own words follow '{{function_node ...}}'
        if "}}" in ln:
            return ln.rsplit("}}", 1)[-1].strip()[:200]
    return (lines[-1] if lines else type(exc).__name__)[:200]


def _is_fallback_error(exc: BaseException) -> bool:
    return is_backend_error(exc) and type(exc).__name__ in _FALLBACK_ERRORS


def _xla(fn: Any) -> Any:
    try:
        cached = _compiled.get(fn) or _variants.get(fn)
    except TypeError:  # not weak-referenceable: compile afresh
        cached = None
    if cached is None:
        cached = _tf().function(fn, jit_compile=True, reduce_retracing=True)
        with contextlib.suppress(TypeError):
            _compiled[fn] = cached
    return cached


def uses_xla_fallback(fn: Any) -> bool:
    """Whether ``fn`` (a layer or model) has needed the XLA path in this process."""
    try:
        return fn in _compiled
    except TypeError:
        return False


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` eagerly; where this CPU has no eager kernel for it, the same call XLA-compiled.

    ``fn`` is a Keras layer, a model or any function of tensors. A failure that XLA cannot mend
    either is raised as the original (eager) error, so bad input still says what is wrong with it.
    """
    try:
        if fn in _compiled:
            return _compiled[fn](*args, **kwargs)
    except TypeError:  # unhashable / not weak-referenceable callables never get cached
        pass
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        if not _is_fallback_error(exc):
            raise
        try:
            return _xla(fn)(*args, **kwargs)
        except Exception:
            with contextlib.suppress(TypeError):
                _compiled.pop(fn, None)
            raise exc from None


# -- private graph-walk API (activations capture) -------------------------------------------------------

def functional_graph(op: Any) -> Any:
    """The Functional graph inside a (nested) model, or None for plain layers and subclassed models."""
    from keras.src.models.functional import Functional
    from keras.src.models.sequential import Sequential

    if isinstance(op, Sequential):
        return op._functional  # a built Sequential runs through this Functional
    if isinstance(op, Functional):
        return op
    return None


def standardize_inputs(functional: Any, inputs: Any) -> Any:
    """The inputs as the graph walk takes them (converted to tensors, nested like the model's inputs)."""
    return functional._standardize_inputs(inputs)


def run_graph(functional: Any, inputs: Any, operation_fn: Callable[[Any], Callable[..., Any]]) -> Any:
    """Run a Functional graph node by node, calling ``operation_fn(op)`` in place of each operation.

    ``inputs`` come from :func:`standardize_inputs`; the walk is what a plain eager ``model(x)`` does.
    """
    return functional._run_through_graph(inputs, operation_fn=operation_fn)


#: Memory one eager pass over a batch may hold. An eager Functional call (a plain ``model(x)`` or
#: :func:`run_graph`) keeps every intermediate tensor until it returns: Keras holds the whole pass in one
#: dict. A batch therefore costs the sum of all its layers' activations per input (about 106 MB for
#: ResNet50 at 224 px up to ``conv3_block4_out``): 64 inputs at once took 8 GB.
EAGER_PASS_BYTES = 512 * 2**20


def activation_bytes(model: Any, fill: int) -> int:
    """Bytes of every layer output of ``model`` (nested models' layers included) for one input, unknown
    dimensions counted as ``fill``: what one input costs an eager pass. 0 when the model has no graph."""
    total = 0
    stack = list(getattr(model, "layers", []) or [])
    while stack:
        layer = stack.pop()
        stack.extend(getattr(layer, "layers", []) or [])
        try:
            outputs = layer.output
        except (AttributeError, ValueError, RuntimeError):  # never called, or called more than once
            continue
        for out in outputs if isinstance(outputs, (list, tuple)) else [outputs]:
            shape = getattr(out, "shape", None)
            if shape is not None:
                total += 4 * math.prod(fill if d is None else int(d) for d in tuple(shape)[1:])
    return total


def eager_batch(model: Any, input_shape: tuple[int, ...], cap: int) -> int:
    """Inputs per eager pass of ``model`` for inputs of ``input_shape`` (batch axis first): as many as
    :data:`EAGER_PASS_BYTES` allows, at least 1, at most ``cap``."""
    per_input = activation_bytes(model, max(input_shape[1:], default=1))
    return max(1, min(cap, EAGER_PASS_BYTES // per_input)) if per_input else cap


def input_operation_name(ref: Any) -> str:
    """The name of the InputLayer behind one of a Functional's symbolic inputs."""
    return str(ref._keras_history.operation.name)


# -- private config loaders (Keras 2 compatibility rebuild) ---------------------------------------------

def deserialize(config: dict[str, Any], *, safe_mode: bool) -> Any:
    """A Keras 3 model from a Keras 3 config, under Keras's safe mode."""
    keras = import_keras()
    from keras.src.saving import serialization_lib

    with serialization_lib.SafeModeScope(safe_mode):
        return keras.saving.deserialize_keras_object(config)


def legacy_model_from_config(config: dict[str, Any], *, safe_mode: bool) -> Any:
    """A Keras 3 model from a tf.keras 2 (legacy) config, through Keras's own legacy loader."""
    import_keras()
    from keras.src.legacy.saving import saving_options, saving_utils
    from keras.src.saving import serialization_lib

    with saving_options.keras_option_scope(use_legacy_config=True), \
            serialization_lib.SafeModeScope(safe_mode):
        return saving_utils.model_from_config(config)
