"""Figure builders (matplotlib ``Figure`` objects, never pyplot). No Keras/TensorFlow imports here."""

from .common import DIVERGING, Scale
from .filters import is_rgb_filterset, plot_filterset, plot_kernel, plot_layer, plot_rgb_filters

__all__ = ["DIVERGING", "Scale", "is_rgb_filterset", "plot_filterset", "plot_kernel", "plot_layer",
           "plot_rgb_filters"]
