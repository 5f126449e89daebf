"""Dataset examples speed (issue 13): the local engine's images/s against plain ``model.predict``.

    .venv/bin/python bench/examples.py                 # ResNet50 (bench/models/resnet50.keras, random weights)
    .venv/bin/python bench/examples.py --images 64 --repeat 1

The images are crops of the bundled photographs (:mod:`inspector.photos`), written once as JPEGs of
varied sizes into a temporary folder. Two comparisons, in one process, sides alternating:

* **scan vs predict**: :func:`inspector.examples.find_examples` on the deepest layer of interest, cache off,
  on the model already in memory (like the baseline's), timed whole (listing, decoding and resizing in the
  background pool, forward passes, top-k; a second row adds opening the model file, as the CLI does), against
  ``model.predict`` of the whole model over the same images *already decoded and preprocessed* in memory
  (the decoding is not counted for the baseline). Ratio = our images/s / predict's images/s (goal >= 0.9).
* **one pass vs one scan per layer**: all layers of interest in one scan against one scan per layer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inspector import kerascompat
from inspector.examples import ScanSettings, decode_image, find_examples, open_images, preprocess_batch
from inspector.examples import input_geometry as geometry_of

LAYERS = ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"]


def make_images(folder: Path, count: int) -> None:
    from PIL import Image

    from inspector.photos import photo_paths

    rng = np.random.default_rng(0)
    photos = [Image.open(p).convert("RGB") for p in photo_paths()]
    for n in range(count):
        img = photos[n % len(photos)]
        s = int(min(img.size) * rng.uniform(0.3, 0.9))
        x, y = rng.integers(0, img.width - s + 1), rng.integers(0, img.height - s + 1)
        side = int(rng.integers(160, 400))
        img.crop((x, y, x + s, y + s)).resize((side, side)).save(folder / f"img{n:04d}.jpg", quality=90)


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(Path(__file__).parent / "models" / "resnet50.keras"))
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    if not Path(args.model).exists():
        print(f"missing {args.model}: run bench/make_models.py first", file=sys.stderr)
        return 1
    keras = kerascompat.import_keras()
    model = keras.saving.load_model(args.model, compile=False)
    settings = ScanSettings(preprocess="caffe")
    with tempfile.TemporaryDirectory(prefix="bench-examples-") as tmp:
        folder = Path(tmp)
        make_images(folder, args.images)
        source = open_images(folder)
        geometry = geometry_of(model, settings)
        decoded = np.stack([decode_image((folder / f).read_bytes(), geometry.height, geometry.width, 3, "stretch")
                            for f in source.files])
        x = preprocess_batch(decoded, geometry, settings)
        model.predict(x[: args.batch], batch_size=args.batch, verbose=0)  # warm-up: graph tracing, both sides
        find_examples(args.model, folder, LAYERS[-1], settings=settings, batch=args.batch, use_cache=False)

        def predict() -> None:
            model.predict(x, batch_size=args.batch, verbose=0)

        def scan(layers: list[str], source: object = model) -> None:
            # The in-memory model: the scan alone, as the baseline's model is loaded beforehand too.
            find_examples(source, folder, layers, settings=settings, batch=args.batch, use_cache=False)

        base, ours, from_file, one_pass, per_layer = [], [], [], [], []
        for _ in range(args.repeat):
            base.append(timed(predict))
            ours.append(timed(lambda: scan([LAYERS[-1]])))
            from_file.append(timed(lambda: scan([LAYERS[-1]], args.model)))
            one_pass.append(timed(lambda: scan(LAYERS)))
            per_layer.append(sum(timed(lambda layer=layer: scan([layer])) for layer in LAYERS))
    n = args.images
    b, o, f, a, s = (statistics.median(v) for v in (base, ours, from_file, one_pass, per_layer))
    print(f"ResNet50 224x224, {n} JPEG images, batch {args.batch}, median of {args.repeat}, "
          f"{kerascompat.import_keras().__version__} Keras\n")
    print("| case | ours | baseline | ratio |")
    print("|---|---|---|---|")
    print(f"| scan `{LAYERS[-1]}` vs `model.predict` (decoded in memory) | {n / o:.1f} images/s | "
          f"{n / b:.1f} images/s | {b / o:.2f}x |")
    print(f"| the same, the scan opening the model file (`inspector examples`) | {n / f:.1f} images/s | "
          f"{n / b:.1f} images/s | {b / f:.2f}x |")
    print(f"| {len(LAYERS)} layers in one pass vs one scan per layer | {a:.1f} s | {s:.1f} s | {s / a:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
