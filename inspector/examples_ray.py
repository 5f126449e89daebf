"""The Ray engine of :func:`inspector.examples.find_examples` (imported only for ``--engine ray``).

Ray Data reads the image files with their paths (``read_binary_files(include_paths=True)``; a zip
is read by the actors themselves, one member per row), ``map_batches`` hands the batches to an
actor class that opens the model once per actor, decodes, preprocesses and runs the same per-batch
code as the local engine (:func:`inspector.examples.scan_batch`), and returns a per-block partial
top-k; the driver merges the partials (:meth:`inspector.examples.TopK.merge`), so the result is the
local engine's: same ranking rule, same files, positions and boxes.

Without an address a local Ray is started (and shut down afterwards); with one, the driver joins
that cluster, whose workers must see the model file and the images at the same paths.
"""

from __future__ import annotations

import io
import os
import socket
import zipfile
from typing import Any

import numpy as np

from .errors import ModelNotRunnableError, describe_received, missing_dependency
from .examples import (
    LayerState,
    ProgressFn,
    ScanPlan,
    ScanSettings,
    TopK,
    decode_image,
    preprocess_batch,
    scan_batch,
)

__all__ = ["check_address", "preflight", "run_ray"]


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # the data extra must be there too
    except ImportError as exc:
        raise missing_dependency("ray", "scale", "the Ray engine (--engine ray)") from exc
    return ray


def check_address(address: str, timeout: float = 3.0) -> None:
    """Refuse an address nothing answers at, in seconds (Ray itself would retry for a minute)."""
    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ModelNotRunnableError(f"a Ray address is HOST:PORT or ray://HOST:PORT, e.g. 10.0.0.5:6379. "
                                    f"Received: {describe_received(address)}")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ModelNotRunnableError(f"no Ray cluster answers at this address ({exc.strerror or exc}); start one "
                                    f"with 'ray start --head' or drop --ray-address for a local Ray. "
                                    f"Received: {describe_received(address)}") from exc


def preflight(address: str | None) -> None:
    """Ray importable and, when given, the cluster address answering."""
    _import_ray()
    if address:
        check_address(address)


class ScanActor:
    """One per Ray worker: the model is opened once, then every batch is decoded and scanned here."""

    def __init__(self, model_path: str, paths: list[str], geometry: dict[str, Any], settings: dict[str, Any],
                 files: list[str], root: str, is_zip: bool, k: int, unsafe: bool) -> None:
        from .examples import BatchRunner, InputGeometry
        from .loader import open_model
        from .runtime import load_runnable

        self.index = open_model(model_path)
        self.model = load_runnable(self.index, safe_mode=not unsafe)
        self.paths = paths
        self.runner = BatchRunner(self.index, self.model, paths)
        self.geometry = InputGeometry(**geometry)
        self.settings = ScanSettings(**settings)
        self.position = {name: i for i, name in enumerate(files)}
        self.files, self.root, self.is_zip, self.k = files, root, is_zip, k
        self.archive = zipfile.ZipFile(root) if is_zip else None

    def _index_of(self, path: str) -> int:
        rel = os.path.relpath(path if os.path.isabs(path) else "/" + path, self.root).replace(os.sep, "/")
        return self.position[rel]

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        g = self.geometry
        if self.is_zip:
            indices = [int(i) for i in batch["index"]]
            payloads = []
            for i in indices:
                try:
                    payloads.append(self.archive.read(self.files[i]) if self.archive is not None else b"")
                except (KeyError, OSError, zipfile.BadZipFile):
                    payloads.append(b"")
        else:
            indices = [self._index_of(str(p)) for p in batch["path"]]
            payloads = list(batch["bytes"])
        ok, bad, images = [], [], []
        for i, data in zip(indices, payloads, strict=True):
            try:
                images.append(decode_image(bytes(data), g.height, g.width, g.channels, self.settings.fit))
                ok.append(i)
            except Exception:  # unreadable: skipped and reported, as in the local engine
                bad.append(i)
        arrays: dict[str, Any] = {"ok": np.asarray(ok, np.int64), "bad": np.asarray(bad, np.int64)}
        if images:
            x = preprocess_batch(np.stack(images), g, self.settings)
            for n, (values, positions) in enumerate(scan_batch(self.runner, x)):
                part = TopK.empty(values.shape[1], self.k, positions.shape[-1])
                part.update(values, np.asarray(ok, np.int64), positions)
                arrays.update({f"values/{n}": part.values, f"files/{n}": part.files,
                               f"positions/{n}": part.positions})
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return {"blob": np.asarray([buf.getvalue()], dtype=object)}


def run_ray(model_path: str, plan: ScanPlan, states: dict[str, LayerState], *, batch: int, address: str | None,
            progress: ProgressFn | None, unsafe: bool) -> None:
    """Scan every image of ``plan`` on Ray Data, merging into ``states`` (fresh states of ``plan.paths``)."""
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
        if address:
            kwargs["address"] = address
        ray.init(**kwargs)
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        images = plan.images
        if images.is_zip:
            ds = ray.data.from_items([{"index": i} for i in range(len(images.files))])
        else:
            ds = ray.data.read_binary_files([str(images.root / f) for f in images.files], include_paths=True)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        g = plan.geometry
        s: ScanSettings = plan.settings
        ds = ds.map_batches(
            ScanActor, batch_size=batch, concurrency=max(1, min(4, cpus - 1)), num_cpus=1,
            fn_constructor_kwargs={
                "model_path": os.path.abspath(model_path), "paths": list(plan.paths),
                "geometry": {"height": g.height, "width": g.width, "channels": g.channels,
                             "channels_first": g.channels_first, "builtin_preprocessing": g.builtin_preprocessing},
                "settings": {"preprocess": s.preprocess, "mean": s.mean, "std": s.std, "fit": s.fit,
                             "size": s.size},
                "files": list(images.files), "root": str(images.root), "is_zip": images.is_zip, "k": plan.k,
                "unsafe": unsafe})
        total, done = len(images.files), 0
        for row in ds.iter_rows():
            with np.load(io.BytesIO(row["blob"]), allow_pickle=False) as data:
                ok, bad = data["ok"], data["bad"]
                for n, path in enumerate(plan.paths):
                    st = states[path]
                    if f"values/{n}" in data:
                        st.topk.merge(TopK(data[f"values/{n}"], data[f"files/{n}"], data[f"positions/{n}"]))
                    st.scanned += len(ok)
                    st.skipped.extend(int(i) for i in bad)
            done += len(ok) + len(bad)
            if progress is not None:
                progress(done, total, "on Ray")
        for path in plan.paths:
            states[path].offset = total
    finally:
        if started:
            ray.shutdown()
