"""``i3d serve``: the classifier as an HTTP service with a web page (``pip install 'i3d[serve]'``)."""

from __future__ import annotations

import argparse

from i3d.cli.options import add_settings, build_settings, positive_int
from i3d.errors import I3DError

CONFIG_VARIABLE = "I3D_SERVE_CONFIG"  # the settings, as JSON, for each of uvicorn's worker processes


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, not {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535, not {text}")
    return value


def add_parser(commands) -> None:
    from i3d.settings import ServeConfig

    parser = commands.add_parser("serve", help="an HTTP service and web page: upload a video, get its classes",
                                 description="POST /v1/predict (multipart), GET /v1/models, GET /healthz, GET / "
                                 "(the page), OpenAPI at /docs and /openapi.json.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8000, help="(default: 8000)")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="server processes, each with its own model (default: 1)")
    add_settings(parser, ServeConfig)
    parser.add_argument("--token", default=None, help="every API call must send `Authorization: Bearer TOKEN` "
                        "(default: $I3D_SERVE_TOKEN, else none)")
    parser.add_argument("--no-auth", action="store_true",
                        help="serve an address other than loopback without a token, on purpose")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    try:
        import uvicorn
    except ImportError:
        raise I3DError("i3d serve needs FastAPI and uvicorn: pip install 'i3d[serve]'") from None
    import dataclasses
    import json
    import os

    from i3d.settings import ServeConfig

    token = args.token or os.environ.get("I3D_SERVE_TOKEN") or None
    config = dataclasses.replace(build_settings(args, ServeConfig), token=token)
    if token is None and not args.no_auth and not _is_loopback(args.host):
        raise I3DError(f"--host {args.host} answers other machines: give --token (or I3D_SERVE_TOKEN), or --no-auth "
                       "to serve it without one on purpose")
    os.environ[CONFIG_VARIABLE] = json.dumps(dataclasses.asdict(config))
    _check_can_listen(args.host, args.port)
    print(f"i3d serve: http://{args.host}:{args.port}/ (OpenAPI at /docs)", flush=True)
    uvicorn.run("i3d.serve.app:app_from_environment", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="warning")


def _is_loopback(host: str) -> bool:
    import ipaddress
    import socket

    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        return False  # said by the listening check, with its reason
    return all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


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
