"""Write the fuzzer's extra seed files into tests/fuzz_corpus/seeds/ (committed; rerun only to refresh them).

    .venv/bin/python tests/fuzz_make_seeds.py

The bundled sample models (sample_models/) seed the formats a user meets most (Keras 3 ``.keras``,
legacy ``.h5``, ``.weights.h5``, a Keras 3 export). These add the other writers and reader paths, each
from a tiny real model so one fuzz case costs milliseconds: a nested Keras 3 model (``.keras``,
``.h5`` and a sharded ``.weights.json``), tf_keras 2 ``.h5`` full model and ``save_weights``, a Keras
2.0.5-era file, and tf_keras SavedModels with ``keras_metadata.pb`` and with the metadata in
``saved_model.pb`` (TF <= 2.4). Keras, tf_keras and TensorFlow are needed here only, never by the fuzzer.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "fuzz_corpus" / "seeds"


def main() -> int:
    sys.path.insert(0, str(HERE))
    import keras
    import legacy_fixtures
    import savedmodel_fixtures

    if SEEDS.exists():
        shutil.rmtree(SEEDS)
    SEEDS.mkdir(parents=True)
    keras.utils.set_random_seed(0)
    legacy_fixtures.save_keras3("nested", SEEDS, suffix=".keras")
    legacy_fixtures.save_keras3("nested", SEEDS, suffix=".h5")
    legacy_fixtures.save_tf_keras("nested", SEEDS)
    legacy_fixtures.save_tf_keras("nested", SEEDS, weights_only=True)
    legacy_fixtures.write_keras205_h5(SEEDS / "keras205.h5")
    model = legacy_fixtures.BUILDERS["sequential"](keras)
    (SEEDS / "sharded").mkdir()
    model.save_weights(str(SEEDS / "sharded" / "seq.weights.json"), max_shard_size=0.0005)
    with tempfile.TemporaryDirectory() as tmp:
        built, _ = savedmodel_fixtures.build_tf_keras_save(Path(tmp) / "tfk", with_optimizer=True)
        shutil.copytree(built, SEEDS / "tf_keras_savedmodel")
        built, _ = savedmodel_fixtures.build_old_tf2_style(Path(tmp) / "old")
        shutil.copytree(built, SEEDS / "tf24_savedmodel")
    for empty in SEEDS.rglob("*"):
        if empty.is_dir() and not any(empty.iterdir()):
            empty.rmdir()  # git keeps no empty folders (assets/)
    for path in sorted(SEEDS.rglob("*")):
        if path.is_file():
            print(f"{path.relative_to(SEEDS)}: {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
