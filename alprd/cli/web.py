"""`alprd web`: the search pages and REST API, served by uvicorn in this process."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from alprd.cli.common import load, log
from alprd.exitcodes import ExitCode


def loopback(address: str) -> bool:
    """Whether `address` reaches this host only (127.0.0.0/8, ::1, localhost)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def cmd_web(args: argparse.Namespace) -> int:
    config = load(args)
    web = config.web
    address = args.address or web.address
    port = args.port or web.port
    if not loopback(address):
        print(
            f"error: web.address = {address!r}: alprd web serves this host only (127.0.0.1) "
            "until authentication is configured, and this version has none: keep "
            '"127.0.0.1" and put a reverse proxy with authentication in front',
            file=sys.stderr,
        )
        return ExitCode.CONFIG
    import uvicorn

    from alprd.web.app import create_app

    app = create_app(config)
    log.info("web_serving", address=address, port=port, store=str(config.outputs.sqlite.path))
    uvicorn.run(
        app, host=address, port=port, log_config=None, access_log=False,
        server_header=False, proxy_headers=False,
    )  # fmt: skip
    return ExitCode.OK
