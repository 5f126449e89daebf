"""Figures of issue 11: colour scales from the drawn values, whole-layer montages, legible text.

A tiny real Keras model holds every case: a first RGB conv, a separable conv with a BN after it, a
depthwise conv with one all-zero kernel, 1×1 convs (one with a BN), a 300-map depthwise layer, a conv
reading 300 channels and a Dense on a Flatten. Text checks draw each figure with Agg and compare
the window extents of every drawn text: none overlap, none leave the figure, none under 7 pt, and no
mosaic label covers a tile.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from inspector import open_model
from inspector.export import save_figure
from inspector.filters import consumers_of_map, filters_for_map, output_map_count
from inspector.render.activations import activation_grid_figure, decomposition_figure
from inspector.render.common import DEFAULT_DPI, LABEL_PT
from inspector.render.filters import (
    MontageKind,
    layer_color_limit,
    layer_montage,
    montage_kind,
    montage_page_count,
    plot_consumer_slice,
    plot_filterset,
    plot_layer,
)
from inspector.render.mosaic import MARKED_GID, MOSAIC_GID, mosaic_image

pytestmark = pytest.mark.keras


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import keras

    L = keras.layers
    inp = keras.Input((10, 10, 3))
    h = L.Conv2D(6, 3, name="rgb")(inp)                                   # 8×8×6
    h = L.SeparableConv2D(8, 3, depth_multiplier=2, name="sep")(h)        # 6×6×8
    h = L.BatchNormalization(name="sep_bn")(h)
    h = L.DepthwiseConv2D(3, name="dw")(h)                                # 4×4×8
    h = L.Conv2D(12, 1, name="pw")(h)
    h = L.BatchNormalization(name="pw_bn")(h)
    h = L.Conv2D(300, 1, name="wide")(h)
    h = L.DepthwiseConv2D(3, padding="same", name="dw_wide")(h)          # 300 maps
    h = L.Conv2D(4, 3, padding="same", name="deep")(h)                   # each map reads 300 channels
    h = L.MaxPooling2D(name="pool")(h)
    out = L.Dense(3, name="fc")(L.Flatten(name="flat")(h))
    m = keras.Model(inp, out, name="figures")
    rng = np.random.default_rng(3)
    for layer in m.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        new = [rng.normal(size=w.shape).astype("float32") for w in ws]
        if isinstance(layer, L.BatchNormalization):  # trained-looking BN: folding really rescales
            new[0] = rng.lognormal(0, 0.7, ws[0].shape).astype("float32")
            new[3] = rng.lognormal(-3, 1, ws[3].shape).astype("float32")
        if layer.name == "dw":
            new[0][..., 2, 0] = 0.0  # map 2: an all-zero kernel
        layer.set_weights(new)
    path = tmp_path_factory.mktemp("figures") / "figures.keras"
    m.save(path)
    return m, path


@pytest.fixture(scope="module")
def index(model):
    with open_model(model[1]) as ix:
        yield ix


# -- helpers -----------------------------------------------------------------------------------------------

def _mosaic_im(fig: Figure):
    (im,) = [im for ax in fig.axes for im in ax.images if im.get_gid() == MOSAIC_GID]
    return im


def _tiles(fig: Figure) -> np.ndarray:
    image, layout = mosaic_image(fig)
    return layout.split(image)


def _title(fig: Figure) -> str:
    return fig._suptitle.get_text().replace("\n", " ") if fig._suptitle else ""


def _drawn_texts(fig: Figure) -> list[Text]:
    out = []
    for t in fig.findobj(Text):
        if not t.get_visible() or not t.get_text().strip():
            continue
        ax = t.axes
        if ax is not None and not ax.axison and t not in ax.texts and t is not ax.title:
            continue  # tick labels of an axes drawn without axis: never rendered
        out.append(t)
    return out


def check_text_layout(fig: Figure) -> list[Text]:
    """Draw with Agg; fail when two texts overlap, a text leaves the figure, is under LABEL_PT, or a
    mosaic label covers a tile. Returns the drawn texts."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    fw, fh = fig.bbox.width, fig.bbox.height
    texts = _drawn_texts(fig)
    boxes = []
    for t in texts:
        bb = t.get_window_extent(renderer)
        assert bb.x0 >= -0.5 and bb.y0 >= -0.5 and bb.x1 <= fw + 0.5 and bb.y1 <= fh + 0.5, \
            f"text outside the figure: {t.get_text()!r} {bb} in {fw}×{fh}"
        assert t.get_fontsize() >= LABEL_PT - 1e-9, f"text under {LABEL_PT} pt: {t.get_text()!r}"
        boxes.append((t.get_text(), np.array([bb.x0, bb.y0, bb.x1, bb.y1])))
    for (a, ba), (b, bb) in itertools.combinations(boxes, 2):
        overlap = min(ba[2], bb[2]) - max(ba[0], bb[0]) > 0.5 and min(ba[3], bb[3]) - max(ba[1], bb[1]) > 0.5
        assert not overlap, f"texts overlap: {a!r} {ba} and {b!r} {bb}"
    for ax in fig.axes:  # mosaic labels sit in the gaps, never on a tile
        ims = [im for im in ax.images if im.get_gid() == MOSAIC_GID]
        if not ims or not ax.texts:
            continue
        layout = ax._inspector_layout
        s = layout.scale
        corners = []
        for t in range(layout.n):
            y, x = layout.origin(t)
            (x0, y0), (x1, y1) = ax.transData.transform([(x - 0.5, y - 0.5),
                                                         (x - 0.5 + layout.tile_w * s, y - 0.5 + layout.tile_h * s)])
            corners.append((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
        tiles = np.array(corners)
        for t in ax.texts:
            bb = t.get_window_extent(renderer)
            ox = np.minimum(tiles[:, 2], bb.x1) - np.maximum(tiles[:, 0], bb.x0)
            oy = np.minimum(tiles[:, 3], bb.y1) - np.maximum(tiles[:, 1], bb.y0)
            assert not np.any((ox > 0.5) & (oy > 0.5)), f"label {t.get_text()!r} covers a tile"
    return texts


def _all_maps_peak(index, layer: str, **options) -> float:
    rec = index.layer(layer)
    n = output_map_count(rec, options.get("stage"))
    return max(float(np.abs(filters_for_map(rec, j, index=index, **options).kernels).max()) for j in range(n))


# -- colour scales -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("layer", "options"), [
    ("sep", {}),                               # effective kernels: K_eff = Σ_m D·P, not the depthwise tensor
    ("sep", {"fold_bn": True}),                # effective and BN-folded
    ("sep", {"stage": "depthwise"}),
    ("pw", {"fold_bn": True}),                 # the 1×1 conv of issue 11, BN folded
    ("pw", {}),
    ("rgb", {}),
    ("dw", {}),
])
def test_colour_scale_is_the_drawn_max_abs(index, layer, options) -> None:
    fs = filters_for_map(layer, 1, index=index, **options)
    fig = plot_filterset(fs, max_kernels=512)
    peak = float(np.abs(fs.kernels).max())
    np.testing.assert_allclose(_mosaic_im(fig).get_clim(), (-peak, peak), rtol=1e-12)
    # The layer-wide range is the max over the FilterSets drawn for every map (same stage, same fold) ...
    layer_peak = _all_maps_peak(index, layer, **options)
    assert layer_color_limit(layer, index=index, **options) == pytest.approx(layer_peak, rel=1e-12)
    # ... and the montage drawn at layer scale uses exactly it.
    montage = layer_montage(index, layer, scale="layer", **options)
    ims = [im for ax in montage.axes for im in ax.images if im.get_clim() != (0.0, 1.0)]
    if montage_kind(layer, index=index, stage=options.get("stage")) is not MontageKind.RGB:
        (im,) = [im for im in ims if im.colorbar is not None]
        np.testing.assert_allclose(im.get_clim(), (-layer_peak, layer_peak), rtol=1e-12)


def test_layer_scale_is_not_the_raw_tensor(index) -> None:
    """The bug of issue 11: the separable layer's range came from the depthwise kernel, the folded
    1×1 conv's from the unfolded kernel."""
    raw_dw = float(np.abs(index.layer("sep").weight("depthwise_kernel").read(None)).max())
    assert layer_color_limit("sep", index=index) != pytest.approx(raw_dw, rel=1e-3)
    raw_pw = float(np.abs(index.layer("pw").kernel.read(None)).max())
    folded = layer_color_limit("pw", index=index, fold_bn=True)
    assert folded != pytest.approx(raw_pw, rel=1e-3)
    assert folded == pytest.approx(_all_maps_peak(index, "pw", fold_bn=True))


def test_fixed_range_counts_and_shows_clipping(index) -> None:
    fs = filters_for_map("pw", 0, index=index, fold_bn=True)
    v = 0.5 * float(np.abs(fs.kernels).max())
    fig = plot_filterset(fs, vmax=v)
    below, above = int((fs.kernels < -v).sum()), int((fs.kernels > v).sum())
    assert below + above > 0
    assert f"fixed scale ±{v:.3g}: {below + above} of {fs.kernels.size} values clipped" in _title(fig)
    expected = {(True, True): "both", (True, False): "min", (False, True): "max"}[(below > 0, above > 0)]
    assert _mosaic_im(fig).colorbar.extend == expected
    np.testing.assert_allclose(_mosaic_im(fig).get_clim(), (-v, v))
    # A range wider than every value clips nothing: no triangles, no count.
    wide = plot_filterset(fs, vmax=10 * v)
    assert _mosaic_im(wide).colorbar.extend == "neither" and "clipped" not in _title(wide)
    check_text_layout(fig)


# -- montages ------------------------------------------------------------------------------------------------

def test_montage_first_rgb_layer(index) -> None:
    assert montage_kind("rgb", index=index) is MontageKind.RGB
    fig = layer_montage(index, "rgb")
    tiles = _tiles(fig)
    assert tiles.shape == (6, 3, 3, 3)  # every map of the layer, one colour image each
    kernels = np.stack([np.moveaxis(filters_for_map("rgb", j, index=index).kernels, 0, -1) for j in range(6)])
    limit = np.abs(kernels).max()  # one range for all maps: their strengths compare
    np.testing.assert_allclose(tiles, 0.5 + kernels / (2 * limit), rtol=1e-12)
    assert montage_page_count("rgb", index=index) == 1
    assert montage_page_count("rgb", index=index, per_page=4) == 2
    page2 = layer_montage(index, "rgb", per_page=4, page=1)
    assert _tiles(page2).shape == (2, 3, 3, 3)
    assert "page 2 of 2 (maps 4-5 of 6)" in _title(page2)
    check_text_layout(fig)
    check_text_layout(page2)


def test_montage_depthwise_grid(index) -> None:
    assert montage_kind("dw", index=index) is MontageKind.DEPTHWISE
    fig = layer_montage(index, "dw")
    kernels = np.stack([filters_for_map("dw", j, index=index).kernels[0] for j in range(8)])
    np.testing.assert_array_equal(_tiles(fig), kernels)
    # Map 2's kernel is all zero: hatched and said, not a plain white tile.
    (marks,) = [c for ax in fig.axes for c in ax.collections if c.get_gid() == MARKED_GID]
    assert len(marks.get_paths()) == 1
    assert "1 all-zero map hatched" in _title(fig)
    check_text_layout(fig)
    # 300 maps: one page, rows and columns labelled by index instead of 300 labels.
    big = layer_montage(index, "dw_wide")
    assert _tiles(big).shape == (300, 3, 3)
    assert montage_page_count("dw_wide", index=index) == 1
    assert montage_page_count("dw_wide", index=index, per_page=128) == 3
    texts = [t.get_text() for t in check_text_layout(big)]
    assert "+0" in texts and "0" in texts
    # The separable layer's depthwise stage is a depthwise grid too.
    assert montage_kind("sep", index=index, stage="depthwise") is MontageKind.DEPTHWISE


def test_montage_1x1_is_a_matrix(index) -> None:
    assert montage_kind("pw", index=index) is MontageKind.MATRIX
    fig = layer_montage(index, "pw", fold_bn=True)
    (im,) = [im for ax in fig.axes for im in ax.images]
    expected = np.stack([filters_for_map("pw", j, index=index, fold_bn=True).kernels[:, 0, 0] for j in range(12)],
                        axis=1)
    np.testing.assert_allclose(np.ma.getdata(im.get_array()), expected)  # C_in × C_out, one cell per weight
    assert im.get_array().shape == (8, 12)
    peak = np.abs(expected).max()
    np.testing.assert_allclose(im.get_clim(), (-peak, peak))
    assert "BN folded" in _title(fig)
    assert montage_page_count("wide", index=index) == 1
    assert montage_page_count("wide", index=index, per_page=100) == 3
    page = layer_montage(index, "wide", per_page=100, page=2)
    (im,) = [im for ax in page.axes for im in ax.images]
    assert im.get_array().shape == (12, 100)
    check_text_layout(fig)
    check_text_layout(page)
    # The pointwise stage of a separable layer is a 1×1 matrix too: C_in·M = 12 rows × 8 maps.
    sep = layer_montage(index, "sep", stage="pointwise")
    (im,) = [im for ax in sep.axes for im in ax.images]
    assert im.get_array().shape == (12, 8)


def test_montage_other_layers_are_maps_by_channels(index) -> None:
    assert montage_kind("deep", index=index) is MontageKind.GRID
    fig = layer_montage(index, "deep", max_channels=16)
    assert _tiles(fig).shape == (4 * 16, 3, 3)
    assert "showing 16 of 300 input channels" in _title(fig)
    check_text_layout(fig)
    with pytest.raises(Exception, match="unknown montage scale"):
        layer_montage(index, "deep", scale="bogus")


# -- text layout ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [8, 64, 256])
def test_kernel_grid_text_layout(index, count) -> None:
    fs = filters_for_map("deep", 0, index=index, sort="norm")
    fig = plot_filterset(fs, max_kernels=count)
    assert len(_tiles(fig)) == count
    texts = check_text_layout(fig)
    assert any(t.get_text().startswith(f"in {fs.input_channels[0]}") for t in texts)
    assert fig.get_figwidth() <= 20  # the grid stays a readable size; labels are thinned instead


def test_one_by_one_and_who_reads_text_layout(index) -> None:
    check_text_layout(plot_filterset(filters_for_map("wide", 0, index=index)))   # 12 kernels of 1×1
    cons = consumers_of_map(index, "pw", 0)
    for sl in cons.slices:
        check_text_layout(plot_consumer_slice(sl, source="pw map 0"))
    check_text_layout(plot_layer([filters_for_map("deep", j, index=index) for j in range(4)]))


def test_activation_grid_zero_maps_and_colour_bar() -> None:
    acts = np.random.default_rng(0).standard_normal((6, 6, 70))
    acts[..., 3] = 0.0
    acts[..., 5] = 2.5
    fig = activation_grid_figure(acts, title="relu", max_maps=70)
    im = _mosaic_im(fig)
    assert im.colorbar is not None  # per-map scale: the bar says min → max of each map
    (marks,) = [c for ax in fig.axes for c in ax.collections if c.get_gid() == MARKED_GID]
    assert len(marks.get_paths()) == 2
    assert "map 3 all zero (hatched)" in _title(fig) and "map 5 constant (hatched)" in _title(fig)
    check_text_layout(fig)
    shared = activation_grid_figure(acts, shared_scale=True, max_maps=8)
    assert _mosaic_im(shared).colorbar is not None
    check_text_layout(shared)


def test_decomposition_figure_colour_bars_and_title(model, index) -> None:
    from inspector.decompose import decompose

    keras_model = model[0]
    x = np.random.default_rng(1).standard_normal((1, 10, 10, 3)).astype("float32")
    dec = decompose(index, keras_model, x, "deep", 1)
    fig = decomposition_figure(dec, top=4)
    # Colour bars: one per input map, one for the kernels, one for the contributions, Σ/pre-activation, output.
    bars = [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]
    assert len(bars) == 4 + 2 + 1 + 1
    labels = {ax.get_ylabel() for ax in bars}
    assert {"kernel weight", "contribution"} <= labels
    check_text_layout(fig)


# -- output ------------------------------------------------------------------------------------------------

def test_png_is_hi_dpi_and_crisp(index, tmp_path) -> None:
    from PIL import Image

    fig = plot_filterset(filters_for_map("deep", 0, index=index), max_kernels=64)
    assert fig.dpi == DEFAULT_DPI == 200
    path = save_figure(fig, tmp_path / "grid.png")  # no dpi: the figure's
    with Image.open(path) as png:
        assert png.size[0] >= 1600
        assert png.size == (round(fig.get_figwidth() * 200), round(fig.get_figheight() * 200))
    for f in (fig, layer_montage(index, "dw"), layer_montage(index, "pw"), layer_montage(index, "rgb")):
        for ax in f.axes:
            for im in ax.images:
                assert im.get_interpolation() in ("none", "nearest")


def test_dense_image_kernels_keep_norm_order(index) -> None:
    fs = filters_for_map("fc", 0, index=index, sort="norm")
    image = fs.image_kernels()
    fig = plot_filterset(fs)
    order = np.argsort(-image.norms, kind="stable")
    labels = [t.get_text().split("\n")[0] for ax in fig.axes for t in ax.texts]
    assert labels == [f"in {c}" for c in image.input_channels[order]]
    np.testing.assert_array_equal(_tiles(fig), image.kernels[order])
    plain = plot_filterset(filters_for_map("fc", 0, index=index))
    assert [t.get_text().split("\n")[0] for ax in plain.axes for t in ax.texts] == [f"in {c}" for c in range(4)]
