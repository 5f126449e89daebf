"""Where the model comes from (bundled sample, typed path, upload) and the cached loaders.

The index is cached per file with ``st.cache_resource`` keyed by ``(path, mtime_ns, size)``: editing
or replacing the file on disk gives a new key, and every rerun of the script (each widget change)
reuses the open index, so changing an output map costs only the slice of that map.

Uploads are written to a private temporary folder (never next to a user's model), one folder per
upload, removed when another upload replaces it and at interpreter exit.
"""

from __future__ import annotations

import atexit
import gc
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from inspector.dashboard import MAIN_SCRIPT, MODEL_ENV, default_model, sample_models_dir
from inspector.errors import CorruptModelError, InspectorError, ModelFormatError, UnsupportedFormatError
from inspector.loader import open_model
from inspector.records import ModelIndex

__all__ = [
    "MAX_UPLOAD_MB",
    "ModelKey",
    "Prefetcher",
    "cli_model",
    "load_index",
    "load_runnable_cached",
    "model_key",
    "model_source_ui",
    "sample_choices",
]

#: Largest model upload accepted (MB). Streamlit's own ``server.maxUploadSize`` is set to match by
#: ``inspector app``; this check also covers ``streamlit run`` with a larger server limit.
MAX_UPLOAD_MB = int(os.environ.get("INSPECTOR_APP_MAX_UPLOAD_MB", "1024"))
#: Most members a zip upload may hold (a SavedModel has a handful; docs/limits.md).
MAX_UPLOAD_MEMBERS = 10_000
# No bare .weights.json: its shards are separate files that an upload of the manifest alone lacks. A .zip
# holding the manifest and its shards is accepted (see _materialise_upload).
_UPLOAD_TYPES = ["keras", "h5", "hdf5", "zip"]
#: What reading a damaged zip upload raises (bad CRC, truncated member, broken deflate stream).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError)
_SOURCES = ("Sample model", "Path", "Upload")

#: (path, mtime_ns, size): identifies one version of a model file for the caches.
ModelKey = tuple[str, int, int]

_TEMP_DIRS: set[str] = set()


def _cleanup_temp_dirs() -> None:
    for folder in list(_TEMP_DIRS):
        shutil.rmtree(folder, ignore_errors=True)
        _TEMP_DIRS.discard(folder)


atexit.register(_cleanup_temp_dirs)


def cli_model() -> str | None:
    """The model named at start: ``streamlit run main.py -- MODEL`` or ``$INSPECTOR_APP_MODEL``.

    ``sys.argv`` is only trusted when it belongs to this script (``streamlit run`` sets argv[0] to
    the script path); under AppTest it is pytest's command line.
    """
    argv = sys.argv
    if len(argv) > 1 and argv[0] and Path(argv[0]).name in (MAIN_SCRIPT.name, "app.py"):
        return argv[1]
    return os.environ.get(MODEL_ENV) or None


def model_key(path: str) -> ModelKey:
    """The cache key of a model file or SavedModel folder; raises a one-line error when missing.

    For folders only the files a SavedModel is made of are stat'ed (a typed ``/`` must not walk the
    disk); any other folder is rejected by ``open_model`` with its own message.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelFormatError(
            "no file or folder at this path; give a .keras / .h5 / .weights.h5 file or a SavedModel "
            f"folder. Received: {path}")
    if p.is_dir():
        parts = [p, p / "saved_model.pb", p / "variables" / "variables.index"]
        stats = [q.stat() for q in parts if q.exists()]
        return (str(p.resolve()), max(s.st_mtime_ns for s in stats), sum(s.st_size for s in stats[1:]))
    st_ = p.stat()
    return (str(p.resolve()), st_.st_mtime_ns, st_.st_size)


def settle_heap() -> None:
    """Move everything alive now out of the garbage collector's sight (``gc.freeze``).

    A loaded Keras model puts about half a million tracked objects on the heap. Every full collection
    walks all of them: 0.3-0.7 s, triggered at random moments by the allocations of a page run, so a
    map step that takes 10 ms of script time reached the browser after ~800 ms (VGG16 decomposition
    step). Frozen objects are never walked. Called after each (rarely repeated) model load; the
    unfreeze + collect first frees the cycles of models that left the caches since the last load.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


@st.cache_resource(max_entries=8, show_spinner="Indexing the model...")
def load_index(path: str, mtime_ns: int, size: int) -> ModelIndex:
    """The model index of one file version (mtime and size are part of the key, not used)."""
    index = open_model(path)
    settle_heap()
    return index


@st.cache_resource(max_entries=4, show_spinner="Building the model for a forward pass (imports TensorFlow)...")
def load_runnable_cached(path: str, mtime_ns: int, size: int) -> Any:
    """A runnable keras.Model: the only loader that imports TensorFlow (activations page)."""
    from inspector.runtime import load_runnable

    model = load_runnable(load_index(path, mtime_ns, size))
    settle_heap()
    return model


def sample_choices() -> dict[str, Path]:
    """Bundled sample models, by display name (files and SavedModel folders)."""
    folder = sample_models_dir()
    if folder is None:
        return {}
    out: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and (entry / "saved_model.pb").exists():
            out[entry.name + "/"] = entry
        elif entry.is_file() and entry.name.endswith((".keras", ".h5")):
            out[entry.name] = entry
    return out


@dataclass(frozen=True)
class _Upload:
    digest: str
    folder: str
    path: str


def _safe_extract(zf: zipfile.ZipFile, dest: Path, limit: int) -> None:
    """Extract a zip, refusing members that escape ``dest`` and archives that inflate past ``limit``."""
    total = 0
    root = dest.resolve()
    if len(zf.infolist()) > MAX_UPLOAD_MEMBERS:
        raise UnsupportedFormatError(
            f"the zip holds {len(zf.infolist()):,} members, more than the {MAX_UPLOAD_MEMBERS:,} accepted "
            f"(docs/limits.md); zip the SavedModel folder itself. Received: {len(zf.infolist()):,} members")
    for info in zf.infolist():
        target = (dest / info.filename).resolve()
        if not target.is_relative_to(root):
            raise UnsupportedFormatError(
                "the zip holds a path outside its own folder, so it is not extracted; zip the SavedModel "
                f"folder itself. Received: {info.filename}")
        total += info.file_size
        if total > limit:
            raise UnsupportedFormatError(
                f"the zip expands to more than {limit // 2**20} MB; upload a smaller model or open it by "
                f"path. Received: {info.filename}")
    zf.extractall(dest)


def _savedmodel_in(folder: Path) -> Path | None:
    hits = sorted(folder.rglob("saved_model.pb"), key=lambda p: len(p.parts))
    return hits[0].parent if hits else None


def _sharded_manifest_in(folder: Path) -> Path | None:
    hits = sorted(folder.rglob("*.weights.json"), key=lambda p: (len(p.parts), str(p)))
    return hits[0] if hits else None


def _open_zip_upload(target: Path, folder: Path) -> Path | None:
    """The model inside a zip upload: a SavedModel folder or a sharded ``.weights.json`` (with its
    shards), extracted into ``folder``; None when the zip holds neither (it is then sniffed as is)."""
    from inspector.sniff import check_zip_directory

    check_zip_directory(str(target), MAX_UPLOAD_MEMBERS)  # before zipfile parses a directory of any size
    with zipfile.ZipFile(target) as zf:
        leaves = [n.rsplit("/", 1)[-1] for n in zf.namelist()]
        if "saved_model.pb" in leaves:
            find = _savedmodel_in
        elif any(n.endswith(".weights.json") for n in leaves):
            find = _sharded_manifest_in
        else:
            return None
        extracted = folder / "extracted"
        _safe_extract(zf, extracted, MAX_UPLOAD_MB * 4 * 2**20)
    return find(extracted)


def _materialise_upload(name: str, data: bytes) -> str:
    """Write an upload to its own temp folder and return the path to open.

    A zip holding ``saved_model.pb`` (or a sharded ``.weights.json`` with its shards) is extracted and
    its SavedModel folder (manifest) returned; any other file (including a ``.keras`` zip) is written as
    is and sniffed by content by ``open_model``. A damaged zip is a one-line CorruptModelError.
    """
    digest = hashlib.sha1(data).hexdigest()
    previous: _Upload | None = st.session_state.get("_upload")
    if previous is not None and previous.digest == digest and Path(previous.path).exists():
        return previous.path
    if previous is not None:  # a new upload replaces the old one: its files go now
        shutil.rmtree(previous.folder, ignore_errors=True)
        _TEMP_DIRS.discard(previous.folder)
    folder = Path(tempfile.mkdtemp(prefix="inspector-upload-"))
    _TEMP_DIRS.add(str(folder))
    safe_name = Path(name).name or "model"
    target = folder / safe_name
    path = str(target)
    try:
        target.write_bytes(data)
        if safe_name.lower().endswith(".zip") and zipfile.is_zipfile(target):
            found = _open_zip_upload(target, folder)
            if found is not None:
                path = str(found)
    except InspectorError:
        raise
    except _ZIP_ERRORS as exc:
        # Bad CRC-32, a truncated member, a broken deflate stream: a damaged upload, not a bug here.
        raise CorruptModelError(
            f"the uploaded zip cannot be extracted ({type(exc).__name__}: {' '.join(str(exc).split())}); it is "
            f"damaged or truncated: zip the model folder again and re-upload it. Received: {safe_name}") from exc
    st.session_state["_upload"] = _Upload(digest, str(folder), path)
    return path


def _init_source_state() -> None:
    """Defaults for the source widgets, set once per session before the widgets exist."""
    if "src_kind" in st.session_state:
        return
    given = cli_model()
    samples = sample_choices()
    default = default_model()
    if default is not None and default.name in samples:
        st.session_state["src_sample"] = default.name
    if given:
        st.session_state["src_kind"] = "Path"
        st.session_state["src_path"] = given
    else:
        st.session_state["src_kind"] = "Sample model" if "src_sample" in st.session_state else "Path"
    st.session_state.setdefault("src_path", str(default) if default else "")


def model_source_ui() -> str | None:
    """Sidebar widgets choosing the model; returns the path to open, or None when none is chosen.

    Raises :class:`InspectorError` for a rejected upload (too large, unsafe zip).
    """
    _init_source_state()
    sb = st.sidebar
    sb.radio("Model source", _SOURCES, key="src_kind", horizontal=True)
    kind = st.session_state["src_kind"]
    if kind == "Sample model":
        samples = sample_choices()
        if not samples:
            sb.warning("No bundled sample models found (sample_models/ is not next to the package).")
            return None
        if st.session_state.get("src_sample") not in samples:
            st.session_state["src_sample"] = next(iter(samples))
        sb.selectbox("Sample", list(samples), key="src_sample")
        return str(samples[st.session_state["src_sample"]])
    if kind == "Path":
        sb.text_input("Model path (file or SavedModel folder)", key="src_path",
                      help=".keras, .h5, .weights.h5, .weights.json (shards next to it) or a SavedModel directory")
        text = st.session_state.get("src_path", "").strip()
        return text or None
    upload = sb.file_uploader(
        f"Upload a model (max {MAX_UPLOAD_MB} MB)", type=_UPLOAD_TYPES, key="src_upload",
        help="A .keras, .h5 or .weights.h5 file, or as a .zip: a SavedModel folder, or a sharded "
             ".weights.json with its shard files")
    if upload is None:
        return None
    if upload.size > MAX_UPLOAD_MB * 2**20:
        raise UnsupportedFormatError(
            f"the upload is larger than the {MAX_UPLOAD_MB} MB limit; open the model by path instead. "
            f"Received: {upload.name} ({upload.size / 2**20:.0f} MB)")
    return _materialise_upload(upload.name, upload.getvalue())


def open_current(path: str) -> tuple[ModelIndex, ModelKey]:
    """The cached index of ``path`` and its key; raises InspectorError with a one-line message."""
    try:
        # model_key stats the path: a PermissionError there is the user's path, not a bug.
        key = model_key(path)
        return load_index(*key), key
    except InspectorError:
        raise
    except (OSError, ValueError) as exc:  # anything a reader let through still gets one line
        raise ModelFormatError(f"cannot open the model ({type(exc).__name__}: {exc}). Received: {path}") from exc


class Prefetcher:
    """Results made in one background thread ahead of need (the next and previous output map), shared
    by every session of the server. ``take(k, make)`` returns the prefetched value of ``k`` (waiting
    for it when it is being made) or ``make()``; a failed prefetch is simply made again in the
    foreground, so errors reach the page the usual way."""

    def __init__(self, max_entries: int = 64) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inspector-prefetch")
        self._futures: OrderedDict[tuple[object, ...], Future[object]] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def submit(self, first: tuple[object, ...], others: list[tuple[object, ...]],
               work: Callable[[], dict[tuple[object, ...], object]]) -> None:
        """Run ``work`` (returning key -> value) unless ``first`` is already there or pending."""
        with self._lock:
            if first in self._futures:
                return
            futures: dict[tuple[object, ...], Future[object]] = {
                k: Future() for k in [first, *others] if k not in self._futures}
            self._futures.update(futures)
            while len(self._futures) > self._max:
                self._futures.popitem(last=False)

        def run() -> None:
            try:
                values = work()
            except Exception as exc:  # made again (and reported) in the foreground
                for fut in futures.values():
                    fut.set_exception(exc)
                return
            with self._lock:
                for k, v in values.items():
                    fut = futures.get(k) or Future()
                    self._futures.setdefault(k, fut)
                    fut.set_result(v)
            for fut in futures.values():
                if not fut.done():
                    fut.set_exception(LookupError("not prefetched"))

        self._pool.submit(run)

    def take(self, key: tuple[object, ...], make: Callable[[], Any]) -> Any:
        with self._lock:
            fut = self._futures.pop(key, None)
        if fut is not None:
            try:
                return fut.result()
            except Exception:
                pass
        return make()
