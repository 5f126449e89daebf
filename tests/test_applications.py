"""Real architectures from ``keras.applications`` (``weights=None``: nothing is downloaded), read back.

The unit tests build small models layer kind by layer kind; these check the same promises on whole
published architectures, where layer kinds meet: squeeze-excite blocks and Rescaling/Normalization
(EfficientNet), hard-swish and depthwise stacks (MobileNetV3), nested Sequential blocks, LayerNorm and 7x7
depthwise convolutions (ConvNeXt). For ``.keras`` and legacy ``.h5``:

* every layer's parameter count and the total equal Keras's ``count_params()``;
* every kernel the index reads equals the live layer's kernel, value for value;
* the filters of the first and the last map of every filter layer can be sliced, with BatchNormalization
  folded wherever the tool offers it (a refusal is one of our errors, never another exception).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import inspector
from inspector.errors import InspectorError
from inspector.filters import filters_for_map, output_map_count

pytestmark = [pytest.mark.keras, pytest.mark.slow]

APPLICATIONS = {
    "MobileNetV3Small": {"input_shape": (96, 96, 3)},
    "EfficientNetB0": {"input_shape": (64, 64, 3)},
    "ConvNeXtTiny": {"input_shape": (64, 64, 3)},
}


def _live_layer(model: Any, path: str) -> Any:
    owner = model
    for part in path.split("/"):
        owner = owner.get_layer(part)
    return owner


@pytest.fixture(scope="module", params=list(APPLICATIONS))
def application(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Path]]:
    import keras

    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, request.param)(weights=None, include_top=False,
                                                       **APPLICATIONS[request.param])
    folder = tmp_path_factory.mktemp(request.param)
    files = {suffix: folder / f"model{suffix}" for suffix in (".keras", ".h5")}
    for path in files.values():
        model.save(path)
    return model, files


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_application_params_kernels_and_filters(application: tuple[Any, dict[str, Path]], suffix: str) -> None:
    model, files = application
    with inspector.open_model(files[suffix]) as index:
        assert index.total_params == model.count_params()
        leaves = [layer for layer in index.layers if layer.kind != "input"]
        for record in leaves:
            assert record.params == _live_layer(model, record.path).count_params(), record.path
        sliced = 0
        for record in index.filter_layers():
            live = _live_layer(model, record.path)
            kernel = getattr(live, "kernel", None)
            if kernel is None:
                kernel = live.depthwise_kernel
            np.testing.assert_array_equal(record.kernel.read(), kernel.numpy(), err_msg=record.path)
            for j in {0, output_map_count(record) - 1}:
                for fold in (False, "after"):
                    try:
                        filters = filters_for_map(record, j, index=index, fold_bn=fold)
                    except InspectorError:
                        assert fold, record.path  # only folding may be refused (no BN after, padding, ...)
                        continue
                    assert filters.kernels.shape[0] == len(filters.input_channels)
                    assert np.isfinite(filters.kernels).all()
                    sliced += 1
        assert sliced >= 2 * len(index.filter_layers())
