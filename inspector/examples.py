"""Dataset examples: for every map of the chosen layers, the k images (and the patch of each) that excite it most.

One streaming pass over a folder or a zip of images serves every map of every chosen layer
(docs/examples.md). Per image, a map contributes one hit: its spatial maximum and the first
position (row-major) holding it. Hits are ranked by value, then file path, then position, and each
map keeps only its best ``k`` (:class:`TopK`, O(k) memory per map, never the activations). A hit's
box is the receptive field of its position (:mod:`inspector.receptive`) in the resized input.

Pipeline (``engine="local"``): a thread pool decodes and resizes the next batches with Pillow while
the model runs the current one (Pillow and TensorFlow both release the GIL); the forward pass stops
at the deepest chosen layer (a sub-model through ``predict_on_batch``, or the layer-by-layer
:func:`inspector.activations.capture` for layers inside nested models and where this CPU lacks a
kernel). ``engine="ray"`` runs the same per-batch work on Ray Data actors (:mod:`inspector.examples_ray`).

Cache (:class:`ScanCache`): results are stored per layer under a key made of the model's content
hash, the preprocessing, the input size and the image list (names, sizes, mtimes), so a re-run is
instant and another selection of maps or a smaller ``k`` is served from it. Every scan keeps the
top ``max(k, 9)``. A partial state is written every few seconds and when the scan is interrupted,
and the next run resumes from it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputDataError, SelectionError, describe_received
from .records import LayerRecord, ModelIndex

__all__ = [
    "CACHE_ENV",
    "DEFAULT_K",
    "IMAGE_SUFFIXES",
    "Example",
    "ExamplesResult",
    "ImageSource",
    "LayerExamples",
    "MapExamples",
    "ScanCache",
    "ScanSettings",
    "TopK",
    "cache_dir",
    "cached_map_examples",
    "crop_examples",
    "crop_hits",
    "find_examples",
    "latest_scan_meta",
    "latest_scan_stamp",
    "open_images",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
DEFAULT_K = 9
#: Environment variable naming the cache folder (tests point it at a temporary folder).
CACHE_ENV = "INSPECTOR_CACHE_DIR"
_CACHE_VERSION = 2  # 2: "auto" follows the model's own Rescaling/Normalization
_CHECKPOINT_SECONDS = 10.0
ProgressFn = Callable[[int, int, str], None]


# -- the images --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageSource:
    """The IMAGES argument: a folder searched recursively, or a zip; ``files`` sorted, relative, '/'-separated."""

    root: Path
    is_zip: bool
    files: tuple[str, ...]
    ignored: int  # files without an image suffix
    signature: str  # hash of the names, sizes and mtimes

    def read(self, name: str, archive: zipfile.ZipFile | None = None) -> bytes:
        if self.is_zip:
            if archive is not None:
                return archive.read(name)
            with zipfile.ZipFile(self.root) as zf:
                return zf.read(name)
        return (self.root / name).read_bytes()


def _is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def open_images(path: str | os.PathLike[str]) -> ImageSource:
    """List the images of a folder (recursively) or a zip; refuses a source without any image."""
    root = Path(path).expanduser()
    accepted = f"a folder or a .zip of images ({', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)})"
    entries: list[tuple[str, int, int]] = []
    ignored = 0
    if root.is_dir():
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fname in filenames:
                full = Path(dirpath) / fname
                rel = full.relative_to(root).as_posix()
                if not _is_image_name(rel):
                    ignored += 1
                    continue
                try:
                    st = full.stat()
                except OSError:
                    continue
                entries.append((rel, st.st_size, st.st_mtime_ns))
        is_zip = False
    elif root.is_file() and zipfile.is_zipfile(root):
        try:
            with zipfile.ZipFile(root) as zf:
                for info in zf.infolist():
                    if info.is_dir():
                        continue
                    if not _is_image_name(info.filename) or info.filename.startswith("__MACOSX/"):
                        ignored += 1
                        continue
                    entries.append((info.filename, info.file_size, info.CRC))
        except (zipfile.BadZipFile, OSError) as exc:
            raise InputDataError(f"cannot read the zip of images ({exc}); give {accepted}. Received: {path}") from exc
        is_zip = True
    else:
        what = "nothing" if not root.exists() else "a file that is not a zip"
        raise InputDataError(f"the images must be {accepted}; found {what} there. Received: {path}")
    if not entries:
        raise InputDataError(f"no images found ({ignored} other files); give {accepted}. Received: {path}")
    entries.sort()
    digest = hashlib.sha256(json.dumps(entries).encode()).hexdigest()
    return ImageSource(root.resolve(), is_zip, tuple(e[0] for e in entries), ignored, digest)


def decode_image(data: bytes, height: int, width: int, channels: int, fit: str) -> np.ndarray:
    """One image file's bytes as ``(H, W, C)`` float32 on 0..255, fitted like every other input
    (:func:`inspector.inputs.fit_image`). Raises ``InputDataError`` on anything unreadable."""
    from PIL import Image

    from .inputs import fit_image

    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
    if mode is None:
        raise InputDataError(f"images can feed models with 1, 3 or 4 input channels. Received: {channels} channels")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            arr = np.asarray(fit_image(opened.convert(mode), height, width, fit), dtype=np.float32)
    except Exception as exc:  # Pillow raises many kinds (OSError, SyntaxError, DecompressionBombError, ...)
        raise InputDataError(f"unreadable image ({type(exc).__name__}). Received: {len(data)} bytes") from exc
    return arr[..., None] if arr.ndim == 2 else arr


# -- settings ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScanSettings:
    """What changes the activations: preprocessing, fit and input size (part of the cache key)."""

    preprocess: str = "auto"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    fit: str = "stretch"
    size: tuple[int, int] | None = None  # None: the model's input size

    def resolved_preprocess(self, geometry: InputGeometry) -> str:
        from .inputs import auto_preprocess

        return auto_preprocess(self.preprocess, builtin=geometry.builtin_preprocessing)


@dataclass(frozen=True)
class InputGeometry:
    """The decoded image size and layout the model is fed."""

    height: int
    width: int
    channels: int
    channels_first: bool
    builtin_preprocessing: bool = False  # the model takes raw 0..255 (Rescaling/Normalization first)

    @property
    def spatial(self) -> tuple[int, int]:
        return (self.height, self.width)

    def shape(self) -> tuple[int, ...]:
        hw = (self.height, self.width)
        return (self.channels, *hw) if self.channels_first else (*hw, self.channels)


def input_geometry(model: Any, settings: ScanSettings) -> InputGeometry:
    from .inputs import input_spec_from_model

    spec = input_spec_from_model(model)
    if not spec.is_image:
        raise InputDataError(f"dataset examples need a model with image inputs (height, width, channels). "
                             f"Received: input shape {spec.describe()}")
    fixed = tuple(spec.spatial)
    if settings.size is not None:
        if any(d is not None and d != s for d, s in zip(fixed, settings.size, strict=True)):
            raise InputDataError(f"--size must match the model's fixed input size {fixed}. "
                                 f"Received: {settings.size}")
        h, w = settings.size
    elif any(d is None for d in fixed):
        raise InputDataError(f"the model accepts any image size, so give one with --size H W (e.g. 224 224). "
                             f"Received: input shape {spec.describe()}")
    else:
        h, w = int(fixed[0] or 0), int(fixed[1] or 0)
    channels = spec.channels or 3
    return InputGeometry(int(h), int(w), int(channels), spec.channels_first, spec.builtin_preprocessing)


def preprocess_batch(images: np.ndarray, geometry: InputGeometry, settings: ScanSettings) -> np.ndarray:
    """``(N, H, W, C)`` 0..255 -> the model's batch, through :func:`inspector.inputs.load_input` (same vocabulary)."""
    from .inputs import InputSpec, load_input

    x = np.moveaxis(images, -1, 1) if geometry.channels_first else images
    spec = InputSpec(geometry.shape(), geometry.channels_first)
    return load_input(np.ascontiguousarray(x), spec, preprocess=settings.resolved_preprocess(geometry),
                      mean=settings.mean, std=settings.std)


# -- streaming top-k ---------------------------------------------------------------------------------------

_NO_FILE = np.iinfo(np.int64).max


@dataclass
class TopK:
    """The best ``k`` hits of every map: ``values`` / ``files`` (indices into the sorted file list) ``(C, k)``,
    ``positions`` ``(C, k, rank)``. Empty slots have value -inf and file ``_NO_FILE``."""

    values: np.ndarray
    files: np.ndarray
    positions: np.ndarray

    @classmethod
    def empty(cls, n_maps: int, k: int, rank: int) -> TopK:
        return cls(np.full((n_maps, k), -np.inf), np.full((n_maps, k), _NO_FILE, dtype=np.int64),
                   np.zeros((n_maps, k, rank), dtype=np.int64))

    @property
    def k(self) -> int:
        return int(self.values.shape[1])

    def update(self, values: np.ndarray, files: np.ndarray, positions: np.ndarray) -> None:
        """Merge one batch: ``values`` ``(N, C)``, ``files`` ``(N,)``, ``positions`` ``(N, C, rank)``."""
        n = values.shape[0]
        if n == 0:
            return
        self.merge(TopK(np.asarray(values, np.float64).T, np.broadcast_to(files[None, :], (values.shape[1], n)),
                        np.moveaxis(positions, 0, 1)))

    def merge(self, other: TopK) -> None:
        values = np.concatenate([self.values, other.values], axis=1)
        files = np.concatenate([self.files, other.files], axis=1)
        positions = np.concatenate([self.positions, other.positions], axis=1)
        # Rank: value (descending, NaN last), then file path (the file list is sorted), then position.
        keys = [positions[..., a] for a in range(positions.shape[-1] - 1, -1, -1)]
        ranking = -np.where(np.isnan(values), -np.inf, values)
        order = np.lexsort((*keys, files, ranking), axis=1)[:, : self.k]
        self.values = np.take_along_axis(values, order, axis=1)
        self.files = np.take_along_axis(files, order, axis=1)
        self.positions = np.take_along_axis(positions, order[..., None], axis=1)


def batch_maxima(acts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image and map, the spatial maximum and the first (row-major) position holding it:
    ``(N, *spatial, C)`` -> values ``(N, C)``, positions ``(N, C, rank)``."""
    n, spatial, c = acts.shape[0], acts.shape[1:-1], acts.shape[-1]
    flat = acts.reshape(n, -1, c)
    where = np.argmax(flat, axis=1)  # first occurrence: ties go to the smallest position
    values = np.take_along_axis(flat, where[:, None, :], axis=1)[:, 0, :]
    positions = np.stack(np.unravel_index(where, spatial), axis=-1) if spatial else np.zeros((n, c, 0), np.int64)
    return values.astype(np.float64), positions.astype(np.int64)


# -- results -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Example:
    file: str  # relative to the IMAGES folder / zip
    value: float
    position: tuple[int, ...]  # output-map coordinates (channels_last order)
    box: tuple[int, ...]  # (y0, x0, y1, x1) input pixels after resizing, end-exclusive


@dataclass(frozen=True)
class MapExamples:
    map: int
    top: tuple[Example, ...]


@dataclass(frozen=True)
class LayerExamples:
    layer: str
    n_maps: int
    output_size: tuple[int, ...]
    maps: tuple[MapExamples, ...]
    note: str | None = None  # e.g. why boxes are the whole image


@dataclass(frozen=True)
class ExamplesResult:
    """What :func:`find_examples` found; ``to_dict`` is the ``--json`` object (docs/examples.md)."""

    model: str
    images: str
    images_scanned: int
    images_skipped: tuple[str, ...]
    files_ignored: int
    k: int
    input_size: tuple[int, ...]
    preprocess: str
    fit: str
    layers: tuple[LayerExamples, ...]
    from_cache: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "images": self.images, "images_scanned": self.images_scanned,
            "images_skipped": list(self.images_skipped), "files_ignored": self.files_ignored, "k": self.k,
            "input_size": list(self.input_size), "preprocess": self.preprocess, "fit": self.fit,
            "layers": [{"layer": le.layer, "n_maps": le.n_maps, "output_size": list(le.output_size), "note": le.note,
                        "maps": [{"map": m.map, "top": [{"file": e.file, "value": _finite(e.value),
                                                         "position": list(e.position), "box": list(e.box)}
                                                        for e in m.top]} for m in le.maps]}
                       for le in self.layers],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExamplesResult:
        layers = tuple(
            LayerExamples(le["layer"], int(le.get("n_maps", len(le["maps"]))), tuple(le.get("output_size", ())),
                          tuple(MapExamples(int(m["map"]), tuple(
                              Example(e["file"], math.nan if e["value"] is None else float(e["value"]),
                                      tuple(e["position"]), tuple(e["box"])) for e in m["top"]))
                                for m in le["maps"]), le.get("note"))
            for le in d["layers"])
        return cls(d["model"], d.get("images", ""), int(d["images_scanned"]), tuple(d["images_skipped"]),
                   int(d.get("files_ignored", 0)), int(d.get("k", 0)), tuple(d.get("input_size", ())),
                   str(d.get("preprocess", "")), str(d.get("fit", "")), layers)

    def layer(self, path: str) -> LayerExamples:
        for le in self.layers:
            if le.layer == path:
                return le
        raise SelectionError(f"no scanned layer {path!r}; scanned: {', '.join(le.layer for le in self.layers)}. "
                             f"Received: {path!r}")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# -- cache -----------------------------------------------------------------------------------------------

def cache_dir() -> Path:
    """``$INSPECTOR_CACHE_DIR``, else ``$XDG_CACHE_HOME/filter-inspector/examples`` (``~/.cache`` by default)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "filter-inspector" / "examples"


def _file_key(path: Path) -> list[Any]:
    """(path, mtime, size) of a model file or SavedModel folder: the key of its remembered content hash."""
    p = path.resolve()
    if p.is_dir():
        stats = [(str(q.relative_to(p)), q.stat().st_size, q.stat().st_mtime_ns) for q in sorted(p.rglob("*"))
                 if q.is_file()]
        return [str(p), hashlib.sha256(json.dumps(stats).encode()).hexdigest()]
    st = p.stat()
    return [str(p), st.st_size, st.st_mtime_ns]


def model_content_hash(path: str | os.PathLike[str], *, remember: bool = True) -> str:
    """sha256 of a model file's bytes (of every file of a SavedModel folder), remembered per (path, size,
    mtime) in the cache folder so the next look-up is a ``stat``."""
    p = Path(path).expanduser()
    key = json.dumps(_file_key(p))
    memo_path = cache_dir() / "model_hashes.json"
    memo = _read_json(memo_path) or {}
    if key in memo:
        return str(memo[key])
    digest = hashlib.sha256()
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for q in files:
        if p.is_dir():
            digest.update(str(q.relative_to(p)).encode() + b"\0")
        with open(q, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
    value = digest.hexdigest()
    if remember:
        memo[key] = value
        _write_json(memo_path, memo)
    return value


def known_model_hash(path: str | os.PathLike[str]) -> str | None:
    """The remembered content hash of a model file, or None (never reads the model: cheap)."""
    try:
        key = json.dumps(_file_key(Path(path).expanduser()))
    except OSError:
        return None
    memo = _read_json(cache_dir() / "model_hashes.json") or {}
    value = memo.get(key)
    return None if value is None else str(value)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs a re-scan


def _layer_file(layer: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", layer)[:60]
    return f"{safe}-{hashlib.sha1(layer.encode()).hexdigest()[:10]}"


@dataclass
class LayerState:
    """A layer's scan state: its top-k, how many files it has seen (``offset``), and the counts."""

    topk: TopK
    offset: int = 0
    scanned: int = 0
    skipped: list[int] = field(default_factory=list)

    def arrays(self) -> dict[str, Any]:
        return {"values": self.topk.values, "files": self.topk.files, "positions": self.topk.positions,
                "offset": np.int64(self.offset), "scanned": np.int64(self.scanned),
                "skipped": np.asarray(self.skipped, dtype=np.int64)}

    @classmethod
    def from_arrays(cls, data: Any) -> LayerState:
        return cls(TopK(np.asarray(data["values"]), np.asarray(data["files"]), np.asarray(data["positions"])),
                   int(data["offset"]), int(data["scanned"]), [int(v) for v in data["skipped"]])


class ScanCache:
    """One scan's folder: ``<cache>/<model hash>/<scan key>/`` with ``meta.json`` and one ``.npz`` per layer
    (``.partial.npz`` while a scan is under way)."""

    def __init__(self, model_hash: str, settings: ScanSettings, geometry: InputGeometry, images: ImageSource) -> None:
        pre = settings.resolved_preprocess(geometry)
        key = json.dumps({"v": _CACHE_VERSION, "model": model_hash, "preprocess": pre,
                          "mean": settings.mean, "std": settings.std, "fit": settings.fit,
                          "size": list(geometry.spatial), "images": images.signature})
        self.folder = cache_dir() / model_hash[:24] / hashlib.sha256(key.encode()).hexdigest()[:24]
        self.meta: dict[str, Any] = {"images": str(images.root), "is_zip": images.is_zip, "files": list(images.files),
                     "ignored": images.ignored, "preprocess": pre, "fit": settings.fit,
                     "size": list(geometry.spatial), "layers": {}}

    def load(self, layer: str, k: int) -> LayerState | None:
        """A complete state with at least ``k`` kept hits, else a partial one to resume, else None."""
        for suffix in (".npz", ".partial.npz"):
            path = self.folder / (_layer_file(layer) + suffix)
            try:
                with np.load(path, allow_pickle=False) as data:
                    state = LayerState.from_arrays(data)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                continue
            if state.topk.k >= k:
                return state
        return None

    def save(self, layer: str, state: LayerState, *, complete: bool) -> None:
        from .outputs import write_npz

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            name = _layer_file(layer)
            tmp = self.folder / f".{name}.{os.getpid()}.tmp.npz"
            write_npz(tmp, state.arrays())
            os.replace(tmp, self.folder / (name + (".npz" if complete else ".partial.npz")))
            if complete:
                (self.folder / (name + ".partial.npz")).unlink(missing_ok=True)
                meta = _read_json(self.folder / "meta.json") or self.meta
                meta["layers"][layer] = name
                _write_json(self.folder / "meta.json", meta)
        except Exception:  # the cache is an optimisation; a failed write only costs a re-scan
            pass


def cached_map_examples(model_path: str | os.PathLike[str], layer: str, map_index: int, k: int = DEFAULT_K, *,
                        index: ModelIndex | None = None) -> tuple[list[Example], ImageSource, str] | None:
    """The cached top hits of one map from the newest complete scan of this model that covers ``layer``
    (hits, the images, the fit used), or None. Cheap when nothing is cached: a ``stat`` of the model
    file and one small read. ``index``: the model's open index (else it is opened for the boxes)."""
    for meta_path in _scan_metas(model_path, layer):
        meta = _read_json(meta_path)
        if not meta:
            continue
        try:
            with np.load(meta_path.parent / (meta["layers"][layer] + ".npz"), allow_pickle=False) as data:
                state = LayerState.from_arrays(data)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            continue
        if not 0 <= map_index < state.topk.values.shape[0]:
            return None
        from .receptive import FieldCache, ReceptiveFieldError

        field_: Any = None
        try:
            if index is not None:
                field_ = FieldCache(index, layer, meta["size"]).get(map_index)
            else:
                from .loader import open_model

                with open_model(model_path) as opened:
                    field_ = FieldCache(opened, layer, meta["size"]).get(map_index)
        except (ReceptiveFieldError, OSError, ValueError, KeyError):
            field_ = None
        hits = _hits(state.topk, map_index, k, meta["files"], field_, tuple(meta["size"]))
        source = ImageSource(Path(meta["images"]), bool(meta["is_zip"]), tuple(meta["files"]),
                             int(meta.get("ignored", 0)), "")
        return hits, source, str(meta.get("fit", "stretch"))
    return None


def _scan_metas(model_path: str | os.PathLike[str], layer: str) -> list[Path]:
    model_hash = known_model_hash(model_path)
    if model_hash is None:
        return []
    root = cache_dir() / model_hash[:24]
    if not root.is_dir():
        return []
    found = []
    for meta_path in root.glob("*/meta.json"):
        meta = _read_json(meta_path)
        if meta and layer in meta.get("layers", {}):
            found.append(meta_path)
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def latest_scan_stamp(model_path: str | os.PathLike[str], layer: str) -> float | None:
    """When the newest complete scan of ``layer`` was stored (None: never). Cheap when there is none."""
    metas = _scan_metas(model_path, layer)
    return metas[0].stat().st_mtime if metas else None


def latest_scan_meta(model_path: str | os.PathLike[str], layer: str) -> dict[str, Any] | None:
    """The settings and image list of the newest complete scan of ``layer``."""
    metas = _scan_metas(model_path, layer)
    return _read_json(metas[0]) if metas else None


def _hits(topk: TopK, j: int, k: int, files: Sequence[str], field_: Any, size: tuple[int, ...]) -> list[Example]:
    out = []
    for n in range(min(k, topk.k)):
        f = int(topk.files[j, n])
        if f == _NO_FILE:
            break
        pos = tuple(int(v) for v in topk.positions[j, n])
        box = field_.box(pos) if field_ is not None else (0,) * len(size) + size
        out.append(Example(files[f], float(topk.values[j, n]), pos, tuple(int(v) for v in box)))
    return out


# -- forward passes ------------------------------------------------------------------------------------------

class BatchRunner:
    """The chosen layers' activations (channels_last) for a preprocessed batch, stopping at the deepest one.

    A sub-model ``keras.Model(inputs, outputs)`` run with ``predict_on_batch`` (the compiled graph) when
    every layer is reachable from the top-level graph; otherwise, or when this CPU cannot run it,
    :func:`inspector.activations.capture` (layer by layer, with the XLA fallback)."""

    def __init__(self, index: ModelIndex, model: Any, paths: Sequence[str]) -> None:
        from .graph import tensor_channels_first

        self.model, self.paths = model, list(paths)
        self.channels_first = [tensor_channels_first(index, index.layer(p)) for p in self.paths]
        self.submodel: Any = None
        if all("/" not in p for p in self.paths):
            try:
                from . import kerascompat

                keras = kerascompat.import_keras()
                outputs = [model.get_layer(p).output for p in self.paths]
                self.submodel = keras.Model(model.inputs, outputs)
            except Exception:  # e.g. a shared layer with several outputs: the capture path
                self.submodel = None

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        from .activations import capture, to_channels_last

        if self.submodel is not None:
            try:
                outs = self.submodel.predict_on_batch(x)
                outs = outs if isinstance(outs, list) else [outs]
                return [to_channels_last(np.asarray(o), cf) for o, cf in zip(outs, self.channels_first, strict=True)]
            except Exception as exc:
                from . import kerascompat

                if not kerascompat.is_backend_error(exc):
                    raise
                self.submodel = None  # no kernel for this on this CPU: the capture path has the XLA fallback
        acts = capture(self.model, x, self.paths)
        return [acts[p] for p in self.paths]


# -- the scan --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScanPlan:
    """What one pass needs: the layers, their map counts and output sizes, and the images."""

    paths: tuple[str, ...]
    n_maps: tuple[int, ...]
    output_sizes: tuple[tuple[int, ...], ...]
    images: ImageSource
    geometry: InputGeometry
    settings: ScanSettings
    k: int


def _spatial_layers(index: ModelIndex, layers: Sequence[str], geometry: InputGeometry
                    ) -> tuple[list[LayerRecord], list[tuple[int, ...]], list[int], list[str | None]]:
    from .graph import tensor_channels_first
    from .receptive import ReceptiveFieldError, layer_output_size

    records, sizes, counts, notes = [], [], [], []
    for name in layers:
        rec = index.layer(name)
        if rec in records:
            continue
        shape = rec.output_shape
        if isinstance(shape, list) or shape is None or len(shape) < 3:
            raise SelectionError(
                f"layer {rec.path!r} ({rec.class_name}) has no spatial maps (output shape {shape}); choose a "
                f"convolution, pooling or other layer with a (height, width, maps) output. Received: {name!r}")
        cf = tensor_channels_first(index, rec)
        n_maps = shape[1] if cf else shape[-1]
        try:
            size = layer_output_size(index, rec, geometry.spatial)
            note = None
        except ReceptiveFieldError as exc:
            size, note = tuple(), f"boxes are the whole image: {exc}"
        if n_maps is None:
            raise SelectionError(f"layer {rec.path!r} has an unknown number of maps. Received: shape {shape}")
        records.append(rec)
        sizes.append(size)
        counts.append(int(n_maps))
        notes.append(note)
    return records, sizes, counts, notes


class _Decoder:
    """Decodes images in a thread pool, a bounded number of batches ahead of the model."""

    def __init__(self, images: ImageSource, geometry: InputGeometry, settings: ScanSettings, workers: int) -> None:
        self.images, self.geometry, self.settings = images, geometry, settings
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inspector-decode")
        self._archives: dict[int, zipfile.ZipFile] = {}

    def _one(self, i: int) -> np.ndarray | None:
        import threading

        g = self.geometry
        archive = None
        if self.images.is_zip:  # one open zip per thread: ZipFile reads are not safe across threads
            tid = threading.get_ident()
            if tid not in self._archives:
                self._archives[tid] = zipfile.ZipFile(self.images.root)
            archive = self._archives[tid]
        try:
            data = self.images.read(self.images.files[i], archive)
            return decode_image(data, g.height, g.width, g.channels, self.settings.fit)
        except (InputDataError, OSError, KeyError, zipfile.BadZipFile):
            return None

    def batches(self, start: int, batch: int) -> Iterator[tuple[list[int], list[int], np.ndarray]]:
        """(file indices decoded, file indices skipped, images ``(N, H, W, C)``) per batch, in file order."""
        n = len(self.images.files)
        spans = deque(range(start, n, batch))
        pending: deque[tuple[int, list[Future[np.ndarray | None]]]] = deque()
        ahead = 3
        try:
            while spans or pending:
                while spans and len(pending) < ahead:
                    s = spans.popleft()
                    pending.append((s, [self.pool.submit(self._one, i) for i in range(s, min(s + batch, n))]))
                s, futures = pending.popleft()
                ok, bad, arrays = [], [], []
                for offset, fut in enumerate(futures):
                    img = fut.result()
                    if img is None:
                        bad.append(s + offset)
                    else:
                        ok.append(s + offset)
                        arrays.append(img)
                g = self.geometry
                stack = np.stack(arrays) if arrays else np.zeros((0, g.height, g.width, g.channels), np.float32)
                yield ok, bad, stack
        finally:
            for _, futures in pending:
                for fut in futures:
                    fut.cancel()
            self.pool.shutdown(wait=True, cancel_futures=True)
            for archive in self._archives.values():
                archive.close()


def scan_batch(runner: BatchRunner, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per chosen layer, (values ``(N, C)``, positions ``(N, C, rank)``) of one preprocessed batch."""
    return [batch_maxima(a) for a in runner(x)]


def _run_local(index: ModelIndex, model: Any, plan: ScanPlan, states: dict[str, LayerState],
               cache: ScanCache | None, batch: int, progress: ProgressFn | None, workers: int) -> None:
    todo = [p for p in plan.paths if states[p].offset < len(plan.images.files)]
    if not todo:
        return
    runner = BatchRunner(index, model, todo)
    start = min(states[p].offset for p in todo)
    total = len(plan.images.files)
    decoder = _Decoder(plan.images, plan.geometry, plan.settings, workers)
    t0 = last_save = time.monotonic()
    done_here = 0
    try:
        for ok, bad, images in decoder.batches(start, batch):
            results = scan_batch(runner, preprocess_batch(images, plan.geometry, plan.settings)) if ok else []
            end = (ok + bad)[-1] + 1 if ok or bad else start
            for n, path in enumerate(todo):
                st = states[path]
                keep = np.asarray([i >= st.offset for i in ok], dtype=bool)
                if results and keep.any():
                    values, positions = results[n]
                    st.topk.update(values[keep], np.asarray(ok, np.int64)[keep], positions[keep])
                    st.scanned += int(keep.sum())
                st.skipped.extend(i for i in bad if i >= st.offset)
                st.offset = max(st.offset, end)
            done_here += len(ok) + len(bad)
            if progress is not None:
                rate = done_here / max(time.monotonic() - t0, 1e-9)
                progress(min(end, total), total, f"{rate:.1f} images/s")
            if cache is not None and time.monotonic() - last_save > _CHECKPOINT_SECONDS:
                for path in todo:
                    cache.save(path, states[path], complete=False)
                last_save = time.monotonic()
    except BaseException:
        if cache is not None:  # interrupted (Ctrl-C, an error): keep what was done for the next run
            for path in todo:
                cache.save(path, states[path], complete=False)
        raise


def _model_label(model: str | os.PathLike[str] | Any) -> str:
    return str(model) if isinstance(model, (str, os.PathLike)) else f"<in-memory {getattr(model, 'name', 'model')}>"


def find_examples(model: str | os.PathLike[str] | Any, images: str | os.PathLike[str], layers: str | Sequence[str],
                  *, maps: str | None = None, k: int = DEFAULT_K, settings: ScanSettings | None = None,
                  batch: int = 32, engine: str = "local", ray_address: str | None = None,
                  progress: ProgressFn | None = None, use_cache: bool = True, unsafe: bool = False,
                  workers: int | None = None) -> ExamplesResult:
    """The top-``k`` dataset examples of the chosen maps of ``layers`` over the images in ``images``.

    ``model``: a model path or an in-memory ``keras.Model`` (never cached); ``maps``: the ``0-7,12``
    syntax, applied to every layer; ``engine``: ``local`` or ``ray`` (``ray_address`` joins a cluster).
    """
    from .loader import open_model
    from .runtime import load_runnable
    from .selectors import parse_maps

    settings = settings or ScanSettings()
    if not isinstance(k, int) or k < 1:
        raise SelectionError(f"k must be a positive integer (the examples kept per map), e.g. 9. Received: {k!r}")
    if not isinstance(batch, int) or batch < 1:
        raise SelectionError(f"the batch size must be a positive integer, e.g. 32. Received: {batch!r}")
    if engine not in ("local", "ray"):
        raise SelectionError(f"the engine must be local or ray. Received: {engine!r}")
    if engine == "ray":  # a missing Ray or a cluster that does not answer is said before any work
        from .examples_ray import preflight

        preflight(ray_address)
    elif ray_address:
        raise SelectionError(f"a Ray address needs the ray engine. Received: ray_address={ray_address!r}")
    selection = parse_maps(maps)
    layer_names = [layers] if isinstance(layers, str) else list(layers)
    if not layer_names:
        raise SelectionError("give at least one layer (--layer L). Received: no layer")
    source = open_images(images)
    with open_model(model) as index:
        runnable = load_runnable(index, safe_mode=not unsafe)
        geometry = input_geometry(runnable, settings)
        records, sizes, counts, notes = _spatial_layers(index, layer_names, geometry)
        chosen = {rec.path: selection.resolve(n, layer=rec.path) for rec, n in zip(records, counts, strict=True)}
        scan_k = max(k, DEFAULT_K)
        plan = ScanPlan(tuple(r.path for r in records), tuple(counts), tuple(sizes), source, geometry, settings,
                        scan_k)
        cache = None
        if use_cache and isinstance(model, (str, os.PathLike)):
            cache = ScanCache(model_content_hash(model), settings, geometry, source)
        rank = 2
        states: dict[str, LayerState] = {}
        all_cached = True
        for path, n_maps in zip(plan.paths, plan.n_maps, strict=True):
            loaded = cache.load(path, scan_k) if cache is not None else None
            if loaded is None or loaded.offset < len(source.files):
                all_cached = False
            states[path] = loaded if loaded is not None else LayerState(TopK.empty(n_maps, scan_k, rank))
        if engine == "ray":
            from .examples_ray import run_ray

            fresh = [p for p in plan.paths if states[p].offset < len(source.files)]
            if fresh:
                if not isinstance(model, (str, os.PathLike)):
                    raise SelectionError("the Ray engine loads the model from its file on every worker; give a model "
                                         "path. Received: an in-memory model")
                for p in fresh:  # Ray scans from the start: a partial local state is not merged into it
                    states[p] = LayerState(TopK.empty(plan.n_maps[plan.paths.index(p)], scan_k, rank))
                run_ray(str(model), plan, states, batch=batch, address=ray_address, progress=progress, unsafe=unsafe)
        else:
            _run_local(index, runnable, plan, states, cache, batch, progress,
                       workers or max(2, min(4, os.cpu_count() or 2)))
        if cache is not None:
            for path in plan.paths:
                cache.save(path, states[path], complete=True)
        layers_out = _layer_results(index, plan, states, chosen, notes, k)
    first = states[plan.paths[0]]
    return ExamplesResult(
        model=_model_label(model), images=str(source.root), images_scanned=first.scanned,
        images_skipped=tuple(source.files[i] for i in sorted(set(first.skipped))), files_ignored=source.ignored,
        k=k, input_size=geometry.spatial, preprocess=settings.resolved_preprocess(geometry), fit=settings.fit,
        layers=tuple(layers_out), from_cache=all_cached)


def _layer_results(index: ModelIndex, plan: ScanPlan, states: dict[str, LayerState], chosen: dict[str, list[int]],
                   notes: list[str | None], k: int) -> list[LayerExamples]:
    from .receptive import FieldCache

    out = []
    for n, path in enumerate(plan.paths):
        fields = FieldCache(index, path, plan.geometry.spatial) if notes[n] is None else None
        state = states[path]
        maps = tuple(MapExamples(j, tuple(_hits(state.topk, j, k, plan.images.files,
                                                 fields.get(j) if fields is not None else None,
                                                 plan.geometry.spatial)))
                     for j in chosen[path])
        out.append(LayerExamples(path, plan.n_maps[n], plan.output_sizes[n], maps, notes[n]))
    return out


# -- crops for figures --------------------------------------------------------------------------------------------

def crop_hits(source: ImageSource, hits: Sequence[Example], size: Sequence[int], fit: str,
              decoded: dict[str, np.ndarray | None] | None = None) -> list[tuple[Example, np.ndarray]]:
    """The hits with their crops (``uint8`` ``(h, w, 3)``: the resized image inside the box); files that
    cannot be read any more are left out. ``decoded`` shares decoded images between calls."""
    decoded = {} if decoded is None else decoded
    h, w = (int(v) for v in size[:2])
    archive = zipfile.ZipFile(source.root) if source.is_zip else None
    try:
        row = []
        for e in hits:
            if e.file not in decoded:
                try:
                    decoded[e.file] = decode_image(source.read(e.file, archive), h, w, 3, fit)
                except (InputDataError, OSError, KeyError):
                    decoded[e.file] = None
            img = decoded[e.file]
            if img is None:
                continue
            y0, x0, y1, x1 = e.box[:4]
            crop = img[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
            row.append((e, np.clip(crop, 0, 255).astype(np.uint8)))
        return row
    finally:
        if archive is not None:
            archive.close()


def crop_examples(result: ExamplesResult, layer: str, maps: Sequence[int] | None = None,
                  images: str | os.PathLike[str] | None = None) -> list[tuple[int, list[tuple[Example, np.ndarray]]]]:
    """Per map, its examples with their crops (``uint8`` ``(h, w, C)``, the resized image inside the box),
    decoding each file once. ``images`` overrides the folder recorded in the result."""
    le = result.layer(layer)
    source = open_images(images or result.images)
    wanted = None if maps is None else set(maps)
    decoded: dict[str, np.ndarray | None] = {}
    return [(m.map, crop_hits(source, m.top, result.input_size, result.fit, decoded))
            for m in le.maps if wanted is None or m.map in wanted]


def describe_images(path: str | os.PathLike[str]) -> str:
    """One line about an IMAGES argument (for errors and the dashboard)."""
    try:
        src = open_images(path)
    except InputDataError as exc:
        return str(exc)
    return f"{len(src.files)} images" + (f" ({src.ignored} other files ignored)" if src.ignored else "") + \
        f" in {describe_received(str(src.root))}"
