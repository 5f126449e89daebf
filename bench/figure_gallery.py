"""Render the figures of issue 11 on real-size models, to look at them.

    .venv/bin/python bench/figure_gallery.py [--models DIR] [--out test-artifacts/figures] [--only NAME ...]

Models: ``vgg16.keras``, ``resnet50.keras``, ``mobilenetv2.keras`` in ``--models`` (default
``/tmp/figmodels``), built offline with ``keras.applications.X(weights=None)`` — never downloaded.
``--make`` builds missing ones; their BatchNormalization statistics are drawn at random (γ, σ² log-normal)
so that folding BN changes the kernels the way it does in a trained network (with ``weights=None``
every BN is the identity and folding changes nothing).

Each figure is saved as PNG at the default DPI (``inspector.render.common.DEFAULT_DPI``) and its
build time printed. Figures needing a forward pass (activations, decomposition) use MobileNetV2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inspector import open_model
from inspector.export import save_figure
from inspector.filters import consumers_of_map, filters_for_map
from inspector.records import ModelIndex
from inspector.render.filters import (
    layer_color_limit,
    layer_montage,
    plot_consumer_slice,
    plot_filterset,
    plot_layer,
)

ARCHS = {"vgg16": "VGG16", "resnet50": "ResNet50", "mobilenetv2": "MobileNetV2"}


def make_models(folder: Path) -> None:
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, cls in ARCHS.items():
        path = folder / f"{name}.keras"
        if path.exists():
            continue
        model = getattr(keras.applications, cls)(weights=None)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                n = layer.get_weights()[0].shape[0]
                layer.set_weights([rng.lognormal(0, 0.5, n).astype("float32"),
                                   rng.normal(0, 0.1, n).astype("float32"),
                                   rng.normal(0, 0.1, n).astype("float32"),
                                   rng.lognormal(-3, 1, n).astype("float32")])
        model.save(path)
        print(f"built {path}")


def figures(models: Path) -> dict[str, tuple[str, Callable[[ModelIndex], Figure]]]:
    """name -> (model file, builder)."""
    def vgg_rgb_montage(ix: ModelIndex) -> Figure:
        return layer_montage(ix, "block1_conv1")

    def vgg_64(ix: ModelIndex) -> Figure:
        return plot_filterset(filters_for_map("block3_conv1", 0, index=ix, sort="norm"))

    def vgg_256(ix: ModelIndex) -> Figure:
        return plot_filterset(filters_for_map("block3_conv1", 0, index=ix, sort="norm"), max_kernels=256)

    def vgg_8(ix: ModelIndex) -> Figure:
        return plot_filterset(filters_for_map("block2_conv1", 0, index=ix, sort="norm"), max_kernels=8)

    def vgg_grid_montage(ix: ModelIndex) -> Figure:
        return layer_montage(ix, "block5_conv3", scale="layer")

    def vgg_fc1_sorted(ix: ModelIndex) -> Figure:
        return plot_filterset(filters_for_map("fc1", 0, index=ix, sort="norm"), max_kernels=64)

    def vgg_layer(ix: ModelIndex) -> Figure:
        from inspector.filters import filters_for_maps

        return plot_layer(filters_for_maps("block2_conv1", list(range(16)), index=ix))

    def resnet_1x1_folded_layer_scale(ix: ModelIndex) -> Figure:
        v = layer_color_limit("conv5_block1_1_conv", index=ix, fold_bn=True)
        return plot_filterset(filters_for_map("conv5_block1_1_conv", 0, index=ix, fold_bn=True), vmax=v)

    def resnet_1x1_folded_raw_range(ix: ModelIndex) -> Figure:
        # What the dashboard's "layer" scale did: the raw kernel's range on BN-folded values (clipping shown now).
        import numpy as np

        raw = float(np.abs(ix.layer("conv5_block1_1_conv").kernel.read(None)).max())
        return plot_filterset(filters_for_map("conv5_block1_1_conv", 0, index=ix, fold_bn=True), vmax=raw)

    def resnet_1x1_matrix(ix: ModelIndex) -> Figure:
        return layer_montage(ix, "conv5_block1_1_conv", fold_bn=True)

    def resnet_rgb(ix: ModelIndex) -> Figure:
        return layer_montage(ix, "conv1_conv")

    def resnet_who_reads(ix: ModelIndex) -> Figure:
        cons = consumers_of_map(ix, "conv2_block1_1_conv", 0)
        return plot_consumer_slice(cons.slices[0], source="conv2_block1_1_conv map 0")

    def mobilenet_depthwise_montage(ix: ModelIndex) -> Figure:
        return layer_montage(ix, "block_16_depthwise")

    def mobilenet_depthwise_map(ix: ModelIndex) -> Figure:
        return plot_filterset(filters_for_map("block_16_depthwise", 5, index=ix))

    def mobilenet_project_matrix(ix: ModelIndex) -> Figure:
        return layer_montage(ix, "block_16_project")

    def mobilenet_rgb(ix: ModelIndex) -> Figure:
        return layer_montage(ix, "Conv1", fold_bn=True)

    def mobilenet_activations(ix: ModelIndex) -> Figure:
        from inspector.render.activations import activation_grid_figure

        acts = _activations(ix, "block_1_expand_relu")
        return activation_grid_figure(acts, title="block_1_expand_relu", max_maps=96)

    def mobilenet_activations_shared(ix: ModelIndex) -> Figure:
        from inspector.render.activations import activation_grid_figure

        acts = _activations(ix, "Conv1_relu")
        return activation_grid_figure(acts, title="Conv1_relu", shared_scale=True)

    def mobilenet_decomposition(ix: ModelIndex) -> Figure:
        from inspector.decompose import decompose
        from inspector.render.activations import decomposition_figure

        model, x = _runnable(ix)
        return decomposition_figure(decompose(ix, model, x, "block_16_project", 3, fold_bn=True))

    vgg, resnet, mobile = (str(models / f"{n}.keras") for n in ARCHS)
    return {
        "vgg16-block1_conv1-montage": (vgg, vgg_rgb_montage),
        "vgg16-block2_conv1-map0-8": (vgg, vgg_8),
        "vgg16-block3_conv1-map0-64": (vgg, vgg_64),
        "vgg16-block3_conv1-map0-256": (vgg, vgg_256),
        "vgg16-block2_conv1-layer": (vgg, vgg_layer),
        "vgg16-block5_conv3-montage": (vgg, vgg_grid_montage),
        "vgg16-fc1-map0-sorted": (vgg, vgg_fc1_sorted),
        "resnet50-conv5_block1_1_conv-map0-folded-layer-scale": (resnet, resnet_1x1_folded_layer_scale),
        "resnet50-conv5_block1_1_conv-map0-folded-raw-range": (resnet, resnet_1x1_folded_raw_range),
        "resnet50-conv5_block1_1_conv-montage-folded": (resnet, resnet_1x1_matrix),
        "resnet50-conv1_conv-montage": (resnet, resnet_rgb),
        "resnet50-conv2_block1_1_conv-map0-who-reads": (resnet, resnet_who_reads),
        "mobilenetv2-block_16_depthwise-montage": (mobile, mobilenet_depthwise_montage),
        "mobilenetv2-block_16_depthwise-map5": (mobile, mobilenet_depthwise_map),
        "mobilenetv2-block_16_project-montage": (mobile, mobilenet_project_matrix),
        "mobilenetv2-Conv1-montage-folded": (mobile, mobilenet_rgb),
        "mobilenetv2-block_1_expand_relu-activations": (mobile, mobilenet_activations),
        "mobilenetv2-Conv1_relu-activations-shared": (mobile, mobilenet_activations_shared),
        "mobilenetv2-block_16_project-decomposition": (mobile, mobilenet_decomposition),
    }


_RUNNABLE: dict[int, tuple[object, object]] = {}


def _runnable(ix: ModelIndex) -> tuple[object, object]:
    if id(ix) not in _RUNNABLE:
        from inspector.inputs import input_spec_from_model, load_input
        from inspector.runtime import load_runnable

        model = load_runnable(ix)
        _RUNNABLE[id(ix)] = (model, load_input("sample", input_spec_from_model(model)))
    return _RUNNABLE[id(ix)]


def _activations(ix: ModelIndex, layer: str) -> Any:
    from inspector.activations import capture

    model, x = _runnable(ix)
    return capture(model, x, [layer])[layer][0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, default=Path("/tmp/figmodels"))
    parser.add_argument("--out", type=Path, default=Path("test-artifacts/figures"))
    parser.add_argument("--only", nargs="*", default=None, help="figure names (substrings)")
    parser.add_argument("--make", action="store_true", help="build missing models (weights=None)")
    args = parser.parse_args(argv)
    if args.make:
        make_models(args.models)
    args.out.mkdir(parents=True, exist_ok=True)
    indexes: dict[str, ModelIndex] = {}
    for name, (path, build) in figures(args.models).items():
        if args.only and not any(o in name for o in args.only):
            continue
        if path not in indexes:
            indexes[path] = open_model(path)
        t0 = time.perf_counter()
        fig = build(indexes[path])
        built = time.perf_counter() - t0
        out = save_figure(fig, args.out / f"{name}.png")
        w, h = fig.get_size_inches() * fig.dpi
        print(f"{name}: built {built:.2f} s, {w:.0f}×{h:.0f} px -> {out}")
    for ix in indexes.values():
        ix.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
