"""The shared table of tiny filter-layer configurations.

One row per configuration: ``(id, build, input_shape)`` where ``build()`` returns a fresh, unbuilt
Keras layer and ``input_shape`` excludes the batch axis (in the layer's own data_format). Other
engineers' tests (decomposition, activations) reuse this list, so keep rows plain and cheap:
every layer has a handful of channels and a few pixels. Keras is imported only when a row is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class LayerCase(NamedTuple):
    id: str
    build: Callable[[], Any]
    input_shape: tuple[int, ...]


def _L() -> Any:
    import keras

    return keras.layers


def _row(id_: str, cls: str, shape: tuple[int, ...], *args: Any, **kwargs: Any) -> LayerCase:
    def build() -> Any:
        return getattr(_L(), cls)(*args, name=id_, **kwargs)

    return LayerCase(id_, build, shape)


CF = {"data_format": "channels_first"}
# channels_first rows avoid outputs whose last spatial size equals the channel count: Keras 3.15.1 on
# the TF CPU backend then adds the bias along the last axis, e.g. Conv2D(4, 3, strides=2,
# padding="same", data_format="channels_first") on (4, 7, 7) gives a (4, 4, 4) output whose bias
# varies along width (seen in this project; docs/filters.md). The filters are right; Keras is not.

LAYER_TABLE: list[LayerCase] = [
    # Conv1D: padding valid/same/causal, strides, dilation, groups, channels_first
    _row("conv1d_valid", "Conv1D", (9, 3), 4, 3),
    _row("conv1d_s2_same", "Conv1D", (10, 3), 4, 3, strides=2, padding="same"),
    _row("conv1d_d2_causal", "Conv1D", (9, 2), 3, 3, dilation_rate=2, padding="causal"),
    _row("conv1d_g2", "Conv1D", (9, 4), 4, 3, groups=2),
    _row("conv1d_g4_same", "Conv1D", (8, 4), 8, 2, groups=4, padding="same"),
    _row("conv1d_cf", "Conv1D", (3, 9), 4, 3, **CF),
    # Conv2D
    _row("conv2d_valid", "Conv2D", (7, 7, 3), 4, 3),
    _row("conv2d_k32_s21_same", "Conv2D", (7, 6, 3), 4, (3, 2), strides=(2, 1), padding="same"),
    _row("conv2d_k4_s2_valid", "Conv2D", (9, 9, 2), 3, 4, strides=2),
    _row("conv2d_d2_same", "Conv2D", (8, 8, 2), 3, 3, dilation_rate=2, padding="same"),
    _row("conv2d_k2_s2_same", "Conv2D", (7, 7, 2), 3, 2, strides=2, padding="same"),
    _row("conv2d_g2", "Conv2D", (6, 6, 4), 4, 3, groups=2),
    _row("conv2d_g4_s2_same", "Conv2D", (7, 7, 8), 8, 3, groups=4, strides=2, padding="same"),
    _row("conv2d_cf_g2_s2_same", "Conv2D", (4, 9, 9), 4, 3, groups=2, strides=2, padding="same", **CF),
    _row("conv2d_cf_d2", "Conv2D", (3, 8, 8), 3, 3, dilation_rate=2, **CF),
    _row("conv2d_nobias", "Conv2D", (6, 6, 3), 4, 3, use_bias=False),
    # Conv3D
    _row("conv3d_k232_s121_same", "Conv3D", (5, 6, 5, 2), 3, (2, 3, 2), strides=(1, 2, 1), padding="same"),
    _row("conv3d_d211", "Conv3D", (6, 4, 4, 2), 3, 2, dilation_rate=(2, 1, 1)),
    _row("conv3d_g2_cf", "Conv3D", (4, 4, 4, 4), 4, 2, groups=2, **CF),
    _row("conv3d_g4", "Conv3D", (4, 4, 4, 4), 4, 2, groups=4),
    # DepthwiseConv1D/2D with depth multiplier 1/2/3
    _row("dw1d_m1", "DepthwiseConv1D", (8, 3), 3),
    _row("dw1d_m2_s2", "DepthwiseConv1D", (9, 3), 3, strides=2, depth_multiplier=2),
    _row("dw1d_m3_same", "DepthwiseConv1D", (8, 2), 3, depth_multiplier=3, padding="same"),
    _row("dw2d_m1", "DepthwiseConv2D", (6, 6, 3), 3),
    _row("dw2d_m2_same", "DepthwiseConv2D", (6, 6, 3), 3, depth_multiplier=2, padding="same"),
    _row("dw2d_m3_s2", "DepthwiseConv2D", (7, 7, 2), 3, depth_multiplier=3, strides=2),
    _row("dw2d_m2_d2", "DepthwiseConv2D", (8, 8, 2), 3, depth_multiplier=2, dilation_rate=2),
    _row("dw2d_cf_m2", "DepthwiseConv2D", (3, 6, 6), 3, depth_multiplier=2, **CF),
    # SeparableConv1D/2D
    _row("sep1d_m2", "SeparableConv1D", (9, 3), 4, 3, depth_multiplier=2),
    _row("sep2d_m1_s2_same", "SeparableConv2D", (7, 7, 3), 4, 3, strides=2, padding="same"),
    _row("sep2d_m3_d2", "SeparableConv2D", (8, 8, 2), 3, 3, depth_multiplier=3, dilation_rate=2),
    _row("sep2d_cf_m2", "SeparableConv2D", (3, 7, 7), 4, 3, depth_multiplier=2, **CF),
    # Conv1D/2D/3DTranspose, incl. output_padding
    _row("conv1dT_s2_same", "Conv1DTranspose", (5, 2), 3, 3, strides=2, padding="same"),
    _row("conv1dT_s2_op1", "Conv1DTranspose", (5, 2), 3, 3, strides=2, output_padding=1),
    _row("conv2dT_s2_valid", "Conv2DTranspose", (4, 4, 3), 3, 3, strides=2),
    _row("conv2dT_s2_same", "Conv2DTranspose", (4, 4, 3), 3, 3, strides=2, padding="same"),
    _row("conv2dT_k2_s3", "Conv2DTranspose", (3, 3, 2), 2, 2, strides=3),
    _row("conv2dT_k4_same", "Conv2DTranspose", (4, 4, 2), 2, 4, strides=2, padding="same"),
    _row("conv2dT_d2_same", "Conv2DTranspose", (5, 5, 2), 2, 3, dilation_rate=2, padding="same"),
    _row("conv2dT_s2_op1_same", "Conv2DTranspose", (4, 4, 2), 3, 3, strides=2, padding="same", output_padding=1),
    _row("conv2dT_cf", "Conv2DTranspose", (2, 4, 4), 3, 3, strides=2, padding="same", **CF),
    _row("conv3dT_s2", "Conv3DTranspose", (3, 3, 3, 2), 2, 2, strides=2),
    _row("conv3dT_s2_op1", "Conv3DTranspose", (3, 3, 2, 2), 2, 3, strides=2, output_padding=1),
    # Dense on 2-D and 3-D input
    _row("dense_2d", "Dense", (7,), 5),
    _row("dense_3d", "Dense", (4, 6), 5),
]

#: Rows by id, for tests that want one configuration.
LAYER_CASES: dict[str, LayerCase] = {case.id: case for case in LAYER_TABLE}
