"""``i3d serve``: the classifier as an HTTP service with a web page (``pip install 'i3d[serve]'``)."""

from __future__ import annotations

import argparse

from i3d.cli.options import add_device, add_weights, positive_int
from i3d.errors import I3DError


def _above_zero(unit: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {unit}, not {text!r}") from None
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"must be above 0 {unit}, not {text}")
        return value

    return parse


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, not {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535, not {text}")
    return value


def add_parser(commands) -> None:
    parser = commands.add_parser("serve", help="an HTTP service and web page: upload a video, get its classes",
                                 description="POST /v1/predict (multipart), GET /v1/models, GET /healthz, GET / "
                                 "(the page), OpenAPI at /docs and /openapi.json.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8000, help="(default: 8000)")
    parser.add_argument("--max-upload-mb", type=_above_zero("megabytes"), default=200.0,
                        help="uploads past this are refused with 413 while streaming (default: 200)")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="server processes, each with its own model (default: 1)")
    parser.add_argument("--queue", type=positive_int, default=4,
                        help="requests waiting or running per process; the next gets 429 (default: 4)")
    parser.add_argument("--timeout", type=_above_zero("seconds"), default=300.0,
                        help="seconds per prediction (default: 300)")
    add_weights(parser)
    add_device(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    try:
        import uvicorn
    except ImportError:
        raise I3DError("i3d serve needs FastAPI and uvicorn: pip install 'i3d[serve]'") from None
    import os

    os.environ["I3D_SERVE_CONFIG"] = f"{args.weights or ''}|{args.device}|{args.max_upload_mb}|{args.queue}|" \
                                     f"{args.timeout}"
    _check_can_listen(args.host, args.port)
    print(f"i3d serve: http://{args.host}:{args.port}/ (OpenAPI at /docs)", flush=True)
    uvicorn.run("i3d.serve.app:app_from_environment", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="warning")


def _check_can_listen(host: str, port: int) -> None:
    """Before loading anything: the address is free and ours to take (uvicorn would say so in a log line
    after the start-up message, and exit 3)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise I3DError(f"--host {host}: not an address this machine knows ({error.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind(address)
        except OSError as error:
            raise I3DError(f"{host}:{port}: cannot listen there ({error.strerror}); choose another --port") from None
