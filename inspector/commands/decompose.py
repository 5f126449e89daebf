"""``inspector decompose MODEL INPUT --layer L --map J``: output map J split into input-channel contributions.

Prints the ranking of input channels by contribution energy and the check against Keras
(max |Σ contributions + bias − Keras pre-activation|); ``--npz`` saves ``contributions``
``(n_inputs_seen, *spatial_out)``, ``input_channels``, ``bias``, ``preactivation`` and ``output``
``(*spatial_out)`` (and more) for the chosen sample.
"""

from __future__ import annotations

import argparse

from ..errors import SelectionError
from .activations import add_run_arguments, check_figure_path, prepare


def register(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument("--layer", required=True, metavar="L", help="a conv-like or Dense layer (path or name)")
    parser.add_argument("--map", required=True, type=int, metavar="J", help="the output map (channel / unit)")
    parser.add_argument("-o", "--output", metavar="FILE", help="figure file (.png/.svg/.pdf)")
    parser.add_argument("--npz", metavar="FILE", help="save the decomposition arrays to an NPZ")
    parser.add_argument("--top", type=int, default=6, metavar="K",
                        help="input channels to draw and list, strongest first (default 6)")
    parser.add_argument("--fold-bn", action="store_true",
                        help="fold the BatchNormalization after the layer: contributions then sum to the BN output")
    parser.add_argument("--sample-index", type=int, default=0, metavar="N", help="which sample of a batch")


def run(args: argparse.Namespace) -> int:
    from ..decompose import decompose, save_npz

    check_figure_path(args.output)
    if args.top < 1:
        raise SelectionError(f"--top must be at least 1. Received: {args.top}")
    index, model, x = prepare(args)
    with index:
        if not 0 <= args.sample_index < len(x):
            raise SelectionError(f"--sample-index must be in 0-{len(x) - 1}. Received: {args.sample_index}")
        dec = decompose(index, model, x, args.layer, args.map, fold_bn=args.fold_bn, sample=args.sample_index)
    print(f"{dec.layer_path} ({dec.class_name}) map {dec.map_index}: {dec.n_inputs} input channels, "
          f"bias {dec.bias:.6g}, activation {dec.activation}{', BN folded' if dec.bn_folded else ''}")
    print(f"check: max |sum + bias - Keras| = {dec.max_abs_error:.3g} (relative {dec.max_rel_error:.2e}); "
          f"max |act - output| = {dec.activation_error:.3g}")
    total = float(dec.energy.sum()) or 1.0
    print("rank  channel  energy share  mean contribution")
    for rank, pos in enumerate(dec.top(args.top), 1):
        print(f"{rank:>4}  {int(dec.input_channels[pos]):>7}  {100 * dec.energy[pos] / total:>11.2f}%  "
              f"{float(dec.contributions[pos].mean()):>17.6g}")
    for note in dec.notes:
        print(f"note: {note}")
    if args.npz:
        save_npz(dec, args.npz)
        print(f"wrote {args.npz}")
    if args.output:
        from ..render.activations import decomposition_figure

        decomposition_figure(dec, top=args.top).savefig(args.output, dpi=120)
        print(f"wrote {args.output}")
    return 0
