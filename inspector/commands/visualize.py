"""``inspector visualize MODEL --layer L --map J``: the input that map J responds to most (feature visualization).

Prints, per optimized image, the activation reached and how it compares with the best natural input
(``--reference DIR``, else the sample inputs bundled in ``sample_models/``) and 200 random crops of
them. ``-o`` writes the grid of images above the activation curve (PNG/SVG/PDF); ``--npz`` the arrays
(:meth:`inspector.visualize.Visualization.to_arrays`: ``image`` in the model's input layout with the
images on a leading axis, ``input_range``, ``activation``, ``activation_trace``, ``map_index``, ``seed``,
``steps``, ...). docs/visualize.md explains the method and the options.
"""

from __future__ import annotations

import argparse

from ..errors import SelectionError


def register(parser: argparse.ArgumentParser) -> None:
    from ..visualize import DEFAULTS, PREPROCESS, Objective

    parser.add_argument("model", help="a .keras or .h5 model file or a SavedModel directory (needs an architecture)")
    parser.add_argument("--layer", required=True, metavar="L", help="layer path or unique name (nested: outer/inner)")
    parser.add_argument("--map", type=int, metavar="J", help="the map (channel / unit) to visualize")
    parser.add_argument("--maps", metavar="SEL", help="several maps of the layer, optimized in one batch, e.g. '0-15'")
    parser.add_argument("--objective", default="channel", choices=[str(o) for o in Objective],
                        help="channel: mean of the map (default); neuron: the map at the centre; negative / "
                             "negative-neuron: the lowest values")
    parser.add_argument("--size", type=int, metavar="N",
                        help=f"side (length for 1-D) for models of variable input size (default "
                             f"{DEFAULTS.image_side}; {DEFAULTS.signal_length} for signals)")
    parser.add_argument("--steps", type=int, default=DEFAULTS.steps, metavar="N",
                        help=f"optimization steps (default {DEFAULTS.steps})")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, metavar="S",
                        help="random seed (same seed, same image)")
    parser.add_argument("--batch", type=int, default=DEFAULTS.batch, metavar="N",
                        help=f"images per forward/backward pass (default {DEFAULTS.batch}; 1 = one map at a time)")
    parser.add_argument("--lr", type=float, default=DEFAULTS.lr, metavar="X",
                        help=f"Adam learning rate (default {DEFAULTS.lr})")
    parser.add_argument("--diversity", type=float, default=0.0, metavar="W",
                        help="push several images of each map apart (weight relative to the activation; try 1)")
    parser.add_argument("--images", type=int, metavar="K", help="images per map (default 1; 4 with --diversity)")
    parser.add_argument("--no-transforms", action="store_true", help="no jitter/scale/rotation (for comparison)")
    parser.add_argument("--preprocess", default="auto", choices=PREPROCESS,
                        help="the input range the model expects, on 0..255 pixels: scale01 [0,1], scale11 [-1,1], "
                             "meanstd, none [0,255], and the Keras applications' caffe (BGR minus the ImageNet "
                             "mean: VGG, ResNet50), torch, tf; auto (default): none when the model starts with a "
                             "Rescaling or Normalization layer, else scale01")
    parser.add_argument("--mean", type=float, nargs="+", metavar="M", help="per-channel mean for meanstd")
    parser.add_argument("--std", type=float, nargs="+", metavar="S", help="per-channel std for meanstd")
    parser.add_argument("--reference", metavar="DIR",
                        help="folder of natural images / .npy arrays to compare with (default: the bundled samples); "
                             "'none' to skip")
    parser.add_argument("--crops", type=int, default=DEFAULTS.crops, metavar="N",
                        help=f"random crops of the references also measured (default {DEFAULTS.crops})")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="figure file (.png/.svg/.pdf)")
    parser.add_argument("--npz", metavar="FILE", help="save the images and numbers to an NPZ")
    parser.add_argument("--unsafe", action="store_true",
                        help="allow running code stored in the model file (Lambda layers); only for trusted files")


def run(args: argparse.Namespace) -> int:
    from ..loader import open_model
    from ..runtime import load_runnable
    from ..service import (
        check_map_arguments,
        prepare_outputs,
        visualization_maps,
        visualize_with_references,
        write_figure,
    )
    from ..visualize import save_npz

    check_map_arguments(args.map, args.maps)  # before the model is opened
    if args.steps < 1:
        raise SelectionError(f"--steps must be a positive integer, e.g. 256. Received: {args.steps}")
    outputs = prepare_outputs(args.output, args.npz)
    with open_model(args.model) as index:
        path = index.layer(args.layer).path  # LayerNotFoundError with close matches
        model = load_runnable(index, safe_mode=not args.unsafe)
    maps = visualization_maps(model, path, args.map, args.maps)
    vis = visualize_with_references(
        model, path, maps, reference=args.reference, size=args.size, preprocess=args.preprocess, mean=args.mean,
        std=args.std, objective=args.objective, steps=args.steps, seed=args.seed, batch=args.batch, lr=args.lr,
        diversity=args.diversity, images_per_map=args.images, transforms=not args.no_transforms, crops=args.crops)
    ref = vis.reference
    print(f"{vis.layer}: {vis.objective} objective, {len(vis.map_index)} image(s), {vis.steps} steps, seed {vis.seed}, "
          f"input {vis.layout} in [{vis.input_range[0]:.4g}, {vis.input_range[1]:.4g}] ({vis.preprocess}), "
          f"{vis.seconds:.1f} s")
    if ref is not None:
        print(f"reference: best of {ref.n_images} natural input(s) ({', '.join(ref.sources)}) and {ref.n_crops} "
              f"random crops")
    else:
        print("reference: none (give --reference DIR to compare with natural inputs)")
    ratios = vis.ratios()
    for i, j in enumerate(vis.map_index):
        line = f"map {int(j)}: activation {vis.activation[i]:.4g}"
        if ref is not None:
            line += f"; best natural {ref.best_image[i]:.4g}, best crop {ref.best_crop[i]:.4g}"
            if ratios is not None and ratios[i] == ratios[i]:
                line += f" -> {ratios[i]:.1f}x the best natural input"
        print(line)
    if outputs.npz is not None:
        print(f"wrote {save_npz(vis, outputs.npz)}")
    if outputs.figure is not None:
        from ..render.visualize import visualization_figure

        print(f"wrote {write_figure(visualization_figure(vis), outputs.figure)}")
    return 0

