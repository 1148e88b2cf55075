"""``condense app``: a model directory -> a static site that scores patient files in the browser."""

from __future__ import annotations

import argparse

# Deferred on purpose: the CLI imports this module to build its parser; what a command runs is imported
# when it runs, so `condense --help` stays fast and never starts TensorFlow.


def register(sub) -> None:
    p = sub.add_parser(
        "app",
        help="write (and optionally serve) a static page that scores patient files on the device with LiteRT.js",
        description="Write SITE/: index.html, the model's step file (it carries every preprocessing rule), our "
        "JavaScript and LiteRT.js. The page reads PhysioNet 2012 records or IHM episodes, bins, imputes and normalizes "
        "them with the rules in the file and runs the model hour by hour in the browser; nothing is uploaded.",
    )
    p.add_argument("--model", required=True, help="model directory written by condense train")
    p.add_argument("--out", required=True, help="folder to write the site into (new, empty, or an earlier site)")
    p.add_argument("--format", default="int8", choices=("float32", "dynamic", "int8"),
                   help="the model file's format (default int8: the smallest); exported first when missing or stale")
    p.add_argument("--litert", default=None,
                   help="node_modules folder holding @litertjs/core (default: the project's web/node_modules)")
    p.add_argument("--data", default=None, help="data for an export that is needed (default: the training data)")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--serve", action="store_true", help="then serve the site on 127.0.0.1 until Ctrl-C")
    p.add_argument("--port", type=int, default=8000, help="port for --serve (default 8000; 0: any free port)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=cmd_app)


def cmd_app(args: argparse.Namespace) -> int:
    from condense.app.site import build_site

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be 0..65535, got {args.port}")
    report = build_site(args.model, args.out, fmt=args.format, litert=args.litert, data=args.data,
                        cache_dir=args.cache_dir, quiet=args.quiet)
    meta = report["metadata"]
    litert = sum(size for name, size in report["files"].items() if name.startswith("litert/"))
    print(f"{report['out']}: {len(report['files'])} files, {report['total_bytes']:,} bytes "
          f"(LiteRT.js {litert:,}; the model file {report['model_bytes']:,}: {meta.get('model')} {meta.get('format')} "
          f"{meta.get('form')}, from {report['model_file']}{', exported now' if report['exported'] else ''})")
    print(f"  reads {meta['rules']['file']}")
    if not args.serve:
        print(f"  serve it with: condense app --model {args.model} --out {args.out} --serve  (or any static server "
              "on http://; file:// cannot load modules)")
        return 0
    from condense.app.serve import make_server

    server = make_server(args.out, port=args.port)
    host, port = server.server_address[:2]
    print(f"  serving on http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
