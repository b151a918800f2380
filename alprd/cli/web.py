"""`alprd web`: the search pages and REST API, served by uvicorn in this process;
`alprd web passwd NAME` and `alprd web token NAME`: who may use them."""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import sys
from pathlib import Path

from alprd import config as cfgmod
from alprd.cli.common import load, log
from alprd.exitcodes import ExitCode
from alprd.web import auth


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
    path = auth.locate(web.users_file, config.paths.state_dir)
    try:
        credentials = auth.read_file(path)
    except auth.CredentialsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    if not loopback(address) and not credentials:
        print(
            f"error: web.address = {address!r}: serving another address than 127.0.0.1 needs "
            "users: add one with `alprd web passwd NAME` (or keep 127.0.0.1)",
            file=sys.stderr,
        )
        return ExitCode.CONFIG
    import uvicorn

    from alprd.web.app import create_app

    app = create_app(config, credentials)
    log.info(
        "web_serving", address=address, port=port, store=str(config.outputs.sqlite.path),
        users=len(credentials.users), tokens=len(credentials.tokens),
        login="required" if credentials else "none (this host only)",
        https=web.tls_cert_file is not None,
    )  # fmt: skip
    uvicorn.run(
        app, host=address, port=port, log_config=None, access_log=False, server_header=False,
        proxy_headers=False,
        ssl_certfile=str(web.tls_cert_file) if web.tls_cert_file else None,
        ssl_keyfile=str(web.tls_key_file) if web.tls_key_file else None,
    )  # fmt: skip
    return ExitCode.OK


def _target(config: cfgmod.Config, args: argparse.Namespace) -> Path:
    """Where passwd and token write: --file, web.users_file, else web-users in the
    state directory."""
    if args.file:
        return Path(args.file)
    if config.web.users_file is not None:
        return config.web.users_file
    return config.paths.state_dir / auth.CREDENTIAL


def cmd_web_passwd(args: argparse.Namespace) -> int:
    config = load(args)
    target = _target(config, args)
    target.parent.mkdir(parents=True, exist_ok=True)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if password != getpass.getpass("again: "):
            print("error: the passwords differ", file=sys.stderr)
            return ExitCode.USAGE
    if len(password) < 8:
        print("error: a password has at least 8 characters", file=sys.stderr)
        return ExitCode.USAGE
    try:
        auth.write_entry(target, "user", args.name, auth.hash_password(password))
    except (auth.CredentialsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    print(f"user {args.name} set in {target}; restart alprd-web to use it")
    return ExitCode.OK


def cmd_web_token(args: argparse.Namespace) -> int:
    config = load(args)
    target = _target(config, args)
    target.parent.mkdir(parents=True, exist_ok=True)
    token, stored = auth.new_token()
    try:
        auth.write_entry(target, "token", args.name, stored)
    except (auth.CredentialsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    print(token)
    print(
        f"token {args.name} set in {target} (shown only now: send it as "
        "`Authorization: Bearer <token>`); restart alprd-web to use it",
        file=sys.stderr,
    )
    return ExitCode.OK


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "web", parents=[common],
        help="search pages and REST API over the stored events (systemd: alprd-web)",
    )  # fmt: skip
    p.add_argument("--address", help="listen address (default: web.address)")
    p.add_argument("--port", type=int, help="port (default: web.port)")
    p.set_defaults(func=cmd_web)
    wsub = p.add_subparsers(dest="web_command", metavar="[passwd|token]")
    pw = wsub.add_parser("passwd", parents=[common], help="add a user, or set a password")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    pw.add_argument("--file", help="credentials file (default: web.users_file, else "
                    "web-users in the state directory)")  # fmt: skip
    pw.set_defaults(func=cmd_web_passwd)
    tk = wsub.add_parser("token", parents=[common], help="make an API token (printed once)")
    tk.add_argument("name")
    tk.add_argument("--file", help="credentials file (as for passwd)")
    tk.set_defaults(func=cmd_web_token)
