"""Figure builders (matplotlib ``Figure`` objects, never pyplot). No Keras/TensorFlow imports here."""

from .common import DIVERGING, Scale
from .filters import (
    is_rgb_filterset,
    plot_consumer_slice,
    plot_filterset,
    plot_kernel,
    plot_layer,
    plot_rgb_filters,
)
from .mosaic import MosaicLayout, mosaic_figure, mosaic_image

__all__ = ["DIVERGING", "MosaicLayout", "Scale", "is_rgb_filterset", "mosaic_figure", "mosaic_image",
           "plot_consumer_slice", "plot_filterset", "plot_kernel", "plot_layer", "plot_rgb_filters"]
