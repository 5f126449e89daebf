"""``inspector decompose MODEL INPUT --layer L --map J``: output map J split into input-channel contributions.

Prints the ranking of input channels by contribution energy and the check against Keras
(max |Σ contributions + bias − Keras pre-activation|); ``--npz`` saves ``contributions``
``(n_inputs_seen, *spatial_out)``, ``input_channels``, ``bias``, ``preactivation`` and ``output``
``(*spatial_out)`` (and more) for the chosen sample.
"""

from __future__ import annotations

import argparse

from ..service import RULES, check_sample_index, open_run, prepare_outputs, write_figure
from ._argtypes import add_run_arguments


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
    from ..decompose import decompose
    from ..serialize import to_npz

    RULES["top"](args.top)
    outputs = prepare_outputs(args.output, args.npz)  # before the forward pass, which is the slow part
    index, model, x = open_run(args.model, args.input, preprocess=args.preprocess, mean=args.mean, std=args.std,
                               unsafe=args.unsafe, fit=args.fit)
    with index:
        check_sample_index(args.sample_index, len(x))
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
    if outputs.npz is not None:
        print(f"wrote {to_npz(dec, outputs.npz)}")
    if outputs.figure is not None:
        from ..render.activations import decomposition_figure

        print(f"wrote {write_figure(decomposition_figure(dec, top=args.top), outputs.figure)}")
    return 0
