"""``condense inspect FILE``: what a ``.tflite`` file takes and gives, its operators, and the input
contract condense wrote into it (:mod:`condense.export.metadata`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from condense.commands.paths import output_file

# Deferred on purpose: the CLI imports this module to build its parser; what a command runs is imported
# when it runs, so `condense --help` stays fast and never starts TensorFlow.


def register(sub) -> None:
    p = sub.add_parser(
        "inspect",
        help="show a .tflite file's inputs, outputs, operators and its condense metadata (the input contract)",
        description="Read FILE with LiteRT: its signature (inputs and outputs by name, shape and type), its "
        "operators, and the JSON metadata condense export writes into every file (channels, preprocessing, "
        "state tensors, output meaning, data fingerprint, AUROC, condense version).",
    )
    p.add_argument("file", help="a .tflite file")
    p.add_argument("--json", default=None, type=output_file, help="also write the metadata to this JSON file")
    p.set_defaults(handler=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    from condense.export.inspection import op_names
    from condense.export.metadata import read_metadata
    from condense.io import write_json

    path = Path(args.file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such .tflite file")
    data = path.read_bytes()
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_content=data, num_threads=1)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: not a .tflite file LiteRT can load ({exc})") from None
    print(f"{path}: {len(data):,} bytes; operators: {', '.join(sorted(set(op_names(data))))}")
    signatures = interpreter.get_signature_list()
    if signatures:
        runner = interpreter.get_signature_runner(next(iter(signatures)))
        tensors = [("in", runner.get_input_details()), ("out", runner.get_output_details())]
        for kind, details in tensors:
            for name, d in sorted(details.items()):
                print(f"  {kind:>3} {name}: {list(map(int, d['shape']))} {d['dtype'].__name__}")
    else:
        for kind, details in (("in", interpreter.get_input_details()), ("out", interpreter.get_output_details())):
            for d in details:
                print(f"  {kind:>3} {d['name']}: {list(map(int, d['shape_signature']))} {d['dtype'].__name__}")
    metadata, note = read_metadata(data)
    if metadata is None:
        print(f"  {note}")
        return 0
    layout = (metadata.get("preprocessing") or {}).get("layout") or {}
    channels = layout.get("names", [])
    print(f"  condense metadata: {metadata.get('model')} {metadata.get('format')} {metadata.get('form')} file, "
          f"{metadata.get('steps')} steps of {metadata.get('hours_per_step')} hour; {len(channels)} channels "
          f"({len(layout.get('continuous', []))} continuous, normalized with the saved mean / scale"
          f"{' folded into the first layer' if metadata.get('normalizer_folded') else ''}); condense "
          f"{metadata.get('condense_version')}")
    if metadata.get("states"):
        states = ", ".join(f"{s['name']} ({s['units']})" for s in metadata["states"])
        print(f"  state (float, zeros for a new patient): {states}")
    print(f"  output: {metadata.get('output')}; test AUROC {metadata.get('test_auroc')}; "
          f"data fingerprint {str(metadata.get('data_fingerprint'))[:16]}")
    if args.json:
        write_json(args.json, metadata)
    return 0
