"""The TensorFlow/Keras boundary: same results on every x86-64 CPU, quiet commands, pinned private APIs.

TensorFlow turns its oneDNN CPU kernels on by default only on some processors; without them, NCHW
convolutions and dilated transposed convolutions have no eager CPU kernel. ``TF_ENABLE_ONEDNN_OPTS=0``
reproduces such a processor on any machine, so the tests below run the affected layer-table rows in a
subprocess with it, and the whole suite also passes with it exported (docs/architecture.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inspector import kerascompat
from inspector.errors import ModelNotRunnableError

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "sample_models" / "digits_cnn.keras"

pytestmark = pytest.mark.keras


def _env(**extra: str) -> dict[str, str]:
    """The user's default environment: none of the settings the test session put in place."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS", "PYTEST_CURRENT_TEST")}
    env.update(extra)
    return env


_FALLBACK_SCRIPT = r"""
import numpy as np
from inspector import kerascompat
keras = kerascompat.import_keras()
rng = np.random.default_rng(0)

def twin(make, **cf):
    a, b = make(**cf), make()
    return a, b

# channels_first Conv2D against its channels_last twin on the transposed input
cf = keras.layers.Conv2D(4, 3, dilation_rate=2, data_format="channels_first")
cl = keras.layers.Conv2D(4, 3, dilation_rate=2)
x = rng.standard_normal((2, 3, 9, 9)).astype("float32")
cf.build(x.shape); cl.build((2, 9, 9, 3))
cl.set_weights(cf.get_weights())
try:
    cf(x); eager_ok = True
except Exception:
    eager_ok = False
got = np.asarray(kerascompat.call(cf, x))
want = np.moveaxis(np.asarray(cl(np.moveaxis(x, 1, -1))), -1, 1)
assert np.abs(got - want).max() < 1e-5, np.abs(got - want).max()
assert kerascompat.uses_xla_fallback(cf) == (not eager_ok)

# dilated Conv2DTranspose against scipy-free numpy scatter
t = keras.layers.Conv2DTranspose(2, 3, dilation_rate=2, use_bias=False)
x2 = rng.standard_normal((1, 4, 4, 3)).astype("float32")
t.build(x2.shape)
k = np.asarray(t.get_weights()[0])  # (kh, kw, out, in)
y = np.asarray(kerascompat.call(t, x2))
ref = np.zeros((1, 4 + 4, 4 + 4, 2))
for i in range(4):
    for j in range(4):
        for a in range(3):
            for b in range(3):
                ref[0, i + 2 * a, j + 2 * b] += k[a, b] @ x2[0, i, j]
assert y.shape == ref.shape, (y.shape, ref.shape)
assert np.abs(y - ref).max() < 1e-4, np.abs(y - ref).max()
print("eager_ok", eager_ok)
"""


def test_fallback_gives_the_exact_result_with_onednn_off() -> None:
    """With oneDNN off these layers have no eager CPU kernel; :func:`kerascompat.call` still computes them."""
    result = subprocess.run([sys.executable, "-c", _FALLBACK_SCRIPT], cwd=REPO, capture_output=True, text=True,
                            timeout=300, env=_env(TF_ENABLE_ONEDNN_OPTS="0"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "eager_ok" in result.stdout


def test_channels_first_and_dilated_transpose_rows_pass_with_onednn_off() -> None:
    """The layer-table rows that failed on CPUs without oneDNN, run exactly as on any other CPU."""
    rows = "cf or d2 or channels_first or dense_image"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", rows,
         "tests/test_decompose.py", "tests/test_filters.py", "tests/test_activations.py", "tests/test_visualize.py"],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=_env(TF_ENABLE_ONEDNN_OPTS="0"))
    tail = result.stdout[-3000:]
    assert result.returncode == 0, tail
    passed = int(tail.rsplit(" passed", 1)[0].split()[-1])
    assert passed >= 15, tail  # the cf / dilated rows of three contract tests, not a vacuous selection
    assert "skipped" not in tail.splitlines()[-1], tail


def test_call_raises_the_original_error_when_xla_cannot_mend_it() -> None:
    keras = kerascompat.import_keras()
    import tensorflow as tf

    def bad_reshape(t: object) -> object:
        return keras.ops.reshape(t, (7,))

    x = np.zeros((2, 3), "float32")
    with pytest.raises(tf.errors.InvalidArgumentError):
        kerascompat.call(bad_reshape, x)
    assert not kerascompat.uses_xla_fallback(bad_reshape)


def test_a_layer_that_nothing_can_run_gets_a_one_line_error_naming_it() -> None:
    from inspector.activations import run_operation

    keras = kerascompat.import_keras()

    def bad_reshape(t: object) -> object:
        return keras.ops.reshape(t, (7,))

    with pytest.raises(ModelNotRunnableError) as info:
        run_operation("block/odd_layer", bad_reshape, np.zeros((2, 3), "float32"))
    text = str(info.value)
    assert "\n" not in text and "'block/odd_layer'" in text and "Received:" in text
    assert "TF_ENABLE_ONEDNN_OPTS" in text


def test_first_line_picks_the_kernel_message() -> None:
    class Fake(Exception):
        message = ("Exception encountered when calling Conv2D.call().\n\n\x1b[1m{{function_node x}} The Conv2D op "
                   "currently only supports the NHWC tensor format on the CPU. [Op:Conv2D]\x1b[0m\n\nArguments ...")

    assert kerascompat.first_line(Fake()).startswith("The Conv2D op currently only supports the NHWC")


def test_private_graph_walk_matches_a_plain_call() -> None:
    """The private APIs capture relies on still exist and walk the graph exactly like ``model(x)``."""
    keras = kerascompat.import_keras()
    inp = keras.Input((5, 5, 2), name="img")
    h = keras.layers.Conv2D(3, 3, name="c")(inp)
    out = keras.layers.GlobalAveragePooling2D(name="g")(h)
    model = keras.Model(inp, out)
    functional = kerascompat.functional_graph(model)
    assert functional is model
    assert kerascompat.functional_graph(model.get_layer("c")) is None
    seq = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert kerascompat.functional_graph(seq) is not None
    assert kerascompat.input_operation_name(model.inputs[0]) == "img"
    seen: list[str] = []

    def operation_fn(op: object) -> object:
        seen.append(op.name)  # type: ignore[attr-defined]
        return op

    x = np.random.default_rng(0).standard_normal((2, 5, 5, 2)).astype("float32")
    walked = kerascompat.run_graph(functional, kerascompat.standardize_inputs(functional, x), operation_fn)
    np.testing.assert_allclose(np.asarray(walked), np.asarray(model(x)), atol=1e-6)
    assert seen == ["c", "g"]


# -- quiet commands --------------------------------------------------------------------------------------

def _inspector(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "inspector", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=env or _env())


@pytest.mark.slow
def test_commands_that_run_keras_write_only_our_lines(tmp_path: Path) -> None:
    """TensorFlow's start-up lines never reach the user: a success writes nothing to stderr, an error one line."""
    ok = _inspector("decompose", str(DIGITS), "sample", "--layer", "conv2", "--map", "3")
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""
    acts = _inspector("activations", str(DIGITS), "sample", "--layer", "conv1", "-o", str(tmp_path / "a.png"))
    assert acts.returncode == 0, acts.stderr
    assert acts.stderr == ""
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((3, 5, 7, 7, 2), "float32"))
    bad = _inspector("decompose", str(DIGITS), str(wrong), "--layer", "conv2", "--map", "3")
    assert bad.returncode == 2
    lines = bad.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("inspector decompose: error: "), bad.stderr
    debug = _inspector("--debug", "decompose", str(DIGITS), str(wrong), "--layer", "conv2", "--map", "3")
    assert debug.returncode != 0 and len(debug.stderr.splitlines()) > 1  # --debug hides nothing


@pytest.mark.slow
def test_quiet_with_onednn_off_on_a_channels_first_model(tmp_path: Path) -> None:
    """The CPU-dependent path (XLA fallback) is as quiet and as exact as the default one."""
    code = r"""
import sys
from inspector import kerascompat
keras = kerascompat.import_keras()
inp = keras.Input((3, 8, 8))
h = keras.layers.Conv2D(4, 3, padding="same", data_format="channels_first", name="c1")(inp)
h = keras.layers.Conv2D(5, 3, dilation_rate=2, data_format="channels_first", name="c2")(h)
keras.Model(inp, h).save(sys.argv[1])
"""
    path = tmp_path / "cf.keras"
    made = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=_env())
    assert made.returncode == 0, made.stderr
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).standard_normal((3, 8, 8)).astype("float32"))
    result = _inspector("decompose", str(path), str(x), "--layer", "c2", "--map", "1",
                        env=_env(TF_ENABLE_ONEDNN_OPTS="0"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    check = next(line for line in result.stdout.splitlines() if line.startswith("check:"))
    relative = float(check.split("relative ")[1].split(")")[0])
    assert relative < 1e-5, check
