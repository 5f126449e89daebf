"""The service layer under the CLI and the dashboard: one rule per option, one layer-selection policy,
one format table, shared text formatters, and commands that do not reach into each other."""

from __future__ import annotations

import ast
import io
import math
from pathlib import Path

import pytest

from inspector import LayerNotFoundError, SelectionError, open_model
from inspector.cli import main
from inspector.commands._progress import text_progress_bar
from inspector.export import MANIFEST_FORMATS, ExportFormat
from inspector.formatting import count_text, index_text, num_text, optional_num_text, shape_text, table_lines
from inspector.outputs import FORMATS, FileFormat, Role, figure_format, formats_with
from inspector.selectors import parse_layer_argument, plan_maps, select_layers
from inspector.service import RULES, StatsOptions

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "sample_models" / "digits_cnn.keras"


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, -1e-3])
def test_dead_threshold_has_one_rule(value: float, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SelectionError, match="--dead-threshold is a relative factor >= 0"):
        StatsOptions(dead_threshold=value)
    assert main(["stats", str(MODEL), f"--dead-threshold={value}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("inspector stats: error: --dead-threshold") and "\n" not in err


def test_rules_accept_their_documented_edges() -> None:
    assert StatsOptions(dead_threshold=0.0, near_zero=0.0, near_zero_abs=0.0, dup_threshold=1.0, bins=1)
    assert StatsOptions(dup_threshold=None).kwargs()["dup_threshold"] is None
    for name, bad in [("dup_threshold", 0.0), ("dup_threshold", 1.5), ("bins", 0), ("top", 0), ("near_zero", -1.0)]:
        with pytest.raises(SelectionError, match=RULES[name].flag):
            RULES[name](bad)


def test_one_format_table() -> None:
    assert [str(f) for f in ExportFormat] == ["png", "svg", "pdf", "npz"]
    assert MANIFEST_FORMATS == ("json", "csv")
    assert set(formats_with(Role.FIGURE)) == {FileFormat.PNG, FileFormat.SVG, FileFormat.PDF, FileFormat.JPG,
                                              FileFormat.JPEG}
    assert set(FORMATS) == set(FileFormat)
    assert figure_format("a/b.SVG") is FileFormat.SVG
    with pytest.raises(SelectionError, match=r"accepted: \.png, \.svg, \.pdf, \.jpg, \.jpeg"):
        figure_format("x.bmp")


def test_formatters() -> None:
    assert shape_text(None) == "?" and shape_text((None, 28, 1)) == "(None, 28, 1)"
    assert shape_text([(None, 2), (None, 3)]) == "(None, 2), (None, 3)"
    assert count_text(None) == "unknown" and count_text(1234567) == "1,234,567"
    assert num_text(None) == "-" and num_text(0.0) == "0" and num_text(1e-5) == "1.000e-05"
    assert optional_num_text(None) == "none" and optional_num_text(0.5) == "0.5"
    assert index_text([7]) == "7" and index_text(range(64)) == "0-63" and index_text([0, 2, 5]) == "0,2,5"
    assert index_text([0, 2, 5, 9], limit=2) == "0,2,..."
    assert table_lines(["a", "bb"], [["xyz", "1"]], right=[1], title="T") == [
        "T", "-------", "a    bb", "-------", "xyz   1", "-------"]


def test_one_layer_selection_policy() -> None:
    with open_model(MODEL) as index:
        filters = [layer.path for layer in index.filter_layers()]
        assert [r.path for r in select_layers(index, None)] == filters
        assert [r.path for r in select_layers(index, "conv*")] == ["conv1", "conv2"]
        assert [r.path for r in select_layers(index, "conv2,conv1")] == ["conv1", "conv2"]  # model order
        assert [r.path for r in select_layers(index, ["conv2", "conv1"])] == ["conv2", "conv1"]  # as given
        assert [r.path for r in select_layers(index, "pool1")] == ["pool1"]  # an exact name is that layer
        with pytest.raises(LayerNotFoundError, match="conv1"):
            select_layers(index, "conv11")
        with pytest.raises(SelectionError, match="no filter layer matches"):
            select_layers(index, "zz*")
        layer, maps = parse_layer_argument("conv2:0-3,7")
        plan = plan_maps(index, layer, maps)
        assert [(p.layer.path, p.maps) for p in plan] == [("conv2", [0, 1, 2, 3, 7])]
        with pytest.raises(SelectionError, match="out of range"):
            plan_maps(index, "conv*", "0-15")  # conv1 has 8 maps: fails before anything is sliced
        assert plan_maps(index, "conv1", None, stage="depthwise", stage_where_offered=True)[0].stage is None


def test_progress_bar_is_cli_side() -> None:
    import inspector.export

    assert not hasattr(inspector.export, "text_progress_bar")
    out = io.StringIO()
    report = text_progress_bar(out, width=4)
    report(1, 2, "conv1:0")
    report(2, 2, "conv1:1")
    assert out.getvalue().startswith("\r[##..] 1/2 conv1:0") and out.getvalue().endswith("\n")


def test_no_command_imports_another_command() -> None:
    """Shared CLI helpers live in ``commands/_*.py``; shared logic in inspector.service."""
    folder = REPO / "inspector" / "commands"
    commands = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")}
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                assert node.module is None or node.module.split(".")[0] not in commands, (path.name, node.module)


def test_no_dashboard_page_imports_another_page() -> None:
    """Widgets shared by pages live in ``dashboard/widgets.py``; view data in ``dashboard/views.py``."""
    folder = REPO / "inspector" / "dashboard"
    pages = {p.stem for p in folder.glob("page_*.py")}
    assert pages, "no pages found"
    for path in folder.glob("page_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom):
                names = [(node.module or "").rsplit(".", 1)[-1], *(a.name for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name.rsplit(".", 1)[-1] for a in node.names]
            assert not set(names) & (pages - {path.stem}), (path.name, names)


def test_inputs_uses_no_private_helper_of_activations() -> None:
    tree = ast.parse((REPO / "inspector" / "inputs.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("activations"):
            pytest.fail(f"inputs.py imports {[a.name for a in node.names]} from activations")
