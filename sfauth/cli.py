"""The ``sfauth`` command line: ``demo``, ``emulator``, ``assertion`` and ``token``.

Flag names follow the Salesforce CLI's ``sf org login jwt`` (``--client-id``, ``--username``,
``--jwt-key-file``, ``--instance-url`` for the login host).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from . import __version__
from ._assertion import AssertionSigner
from ._config import DEFAULT_LOGIN_URL, FlowConfig
from ._env import settings_from_env
from ._keys import load_private_key
from ._logging import redact_secrets
from ._session import AuthSession
from .exceptions import ConfigurationError, SFAuthError

__all__ = ["main"]

_PASSPHRASE_ENV = "SF_JWT_KEY_PASSPHRASE"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when ``None``.

    Returns:
        The exit status: 0 on success, 1 when the operation failed (a request or the token
        exchange), 2 for bad arguments or configuration.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        result: int = args.func(args)
    except ConfigurationError as exc:
        print(f"sfauth: error: {_in_cli_terms(str(exc))}", file=sys.stderr)
        return 2
    except SFAuthError as exc:
        print(f"sfauth: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


#: Python argument names in messages, as the CLI spells them.
_CLI_TERMS = (
    ("allow_http_loopback=True", "--allow-http-loopback"),
    ("pass passphrase=...", f"set ${_PASSPHRASE_ENV}"),
    ("drop passphrase", f"unset ${_PASSPHRASE_ENV}"),
    ("goes in site=...", "goes in --site"),
    ("site must be", "--site must be"),
    ("login_url", "--instance-url"),
    ("private_key", "--jwt-key-file"),
    ("allow_http_loopback", "--allow-http-loopback"),
    ("client_id", "--client-id"),
    ("username", "--username"),
    ("audience", "--audience"),
)


def _in_cli_terms(message: str) -> str:
    for python, flag in _CLI_TERMS:
        message = message.replace(python, flag)
    return message


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sfauth",
        description="Salesforce OAuth 2.0 JWT bearer flow: tokens, assertions, an emulator.",
    )
    parser.add_argument("--version", action="version", version=f"sfauth {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log sfauth events to stderr (-v info, -vv debug)",
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run concurrent queries with a mid-run session expiry against the emulator",
        description="Start the embedded Salesforce emulator, log in with a generated key, run "
        "concurrent queries through one AuthSession, expire every session mid-run, and print "
        "a summary. Exits 0 only when no request failed.",
    )
    demo.add_argument("--requests", type=_positive_int, default=3000, help="default 3000")
    demo.add_argument(
        "--limit", type=_positive_int, default=100, help="connection pool size (default 100)"
    )
    demo.set_defaults(func=_cmd_demo)

    emulator = sub.add_parser(
        "emulator",
        help="serve the Salesforce emulator and print its credentials as one JSON line",
    )
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=0, help="0 picks a free port")
    emulator.add_argument(
        "--key-file",
        type=Path,
        default=None,
        help="where to write the generated private key (default: a temporary file, "
        "deleted when the emulator stops)",
    )
    emulator.set_defaults(func=_cmd_emulator)

    request = sub.add_parser(
        "request",
        help="send one authenticated REST request and print the response",
        description="Log in, send METHOD PATH to the org's instance, and print the response "
        "body (JSON pretty-printed). Exits 1 with Salesforce's error on a non-2xx answer.",
    )
    request.add_argument("method", type=str.upper, choices=_METHODS, metavar="METHOD")
    request.add_argument("path", metavar="PATH", help="e.g. /services/data/v62.0/limits")
    request.add_argument(
        "--data", default=None, help='JSON request body, e.g. \'{"Name": "Acme"}\''
    )
    for name, func, helptext in (
        ("assertion", _cmd_assertion, "print a signed JWT bearer assertion (for curl/Postman)"),
        ("token", _cmd_token, "perform the exchange and print the token response as JSON"),
        ("request", _cmd_request, "(created above)"),
    ):
        cmd = request if name == "request" else sub.add_parser(name, help=helptext)
        cmd.add_argument("--client-id", help="connected app consumer key [$SF_CLIENT_ID]")
        cmd.add_argument("--username", help="Salesforce username (sub) [$SF_USERNAME]")
        cmd.add_argument(
            "--jwt-key-file",
            help="RSA private key PEM file [$SF_JWT_KEY_FILE, or the PEM in $SF_JWT_KEY]; "
            f"an encrypted key's passphrase comes from ${_PASSPHRASE_ENV}",
        )
        cmd.add_argument(
            "--instance-url",
            help="login URL that serves the token endpoint [$SF_LOGIN_URL or "
            f"$SF_INSTANCE_URL, default {DEFAULT_LOGIN_URL}]",
        )
        cmd.add_argument("--audience", help="aud claim, derived by default [$SF_AUDIENCE]")
        cmd.add_argument("--site", help="Experience Cloud path prefix, e.g. /portal [$SF_SITE]")
        cmd.add_argument(
            "--allow-http-loopback",
            action="store_true",
            help="allow http:// for localhost/127.0.0.1 (the emulator)",
        )
        cmd.set_defaults(func=func)
        if name == "token":
            cmd.add_argument(
                "--show-token",
                action="store_true",
                help="print the access token in clear (it is masked by default)",
            )
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _configure_logging(verbose: int) -> None:
    level = (logging.ERROR, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


#: CLI flag -> AuthSession argument; a flag given on the command line wins over $SF_*.
_FLAG_ARGUMENTS = (
    ("client_id", "client_id"),
    ("username", "username"),
    ("jwt_key_file", "private_key"),
    ("instance_url", "login_url"),
    ("audience", "audience"),
    ("site", "site"),
)


def _flow_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """AuthSession arguments from the flags, the rest from ``SF_*`` environment variables."""
    given = {
        argument: getattr(args, flag)
        for flag, argument in _FLAG_ARGUMENTS
        if getattr(args, flag) is not None
    }
    if "private_key" in given:
        given["private_key"] = Path(given["private_key"])
    try:
        settings = settings_from_env(provided=[*given, "api_version"])
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc}; or pass the matching flags (see --help)") from None
    settings.update(given)
    settings["allow_http_loopback"] = args.allow_http_loopback
    return settings


def _cmd_assertion(args: argparse.Namespace) -> int:
    kwargs = _flow_kwargs(args)
    config = FlowConfig.create(
        client_id=kwargs["client_id"],
        username=kwargs["username"],
        login_url=kwargs.get("login_url", DEFAULT_LOGIN_URL),
        audience=kwargs.get("audience"),
        site=kwargs.get("site", ""),
        allow_http_loopback=kwargs["allow_http_loopback"],
    )
    signer = AssertionSigner(
        client_id=config.client_id,
        username=config.username,
        audience=config.audience,
        private_key=load_private_key(kwargs["private_key"], kwargs.get("passphrase")),
    )
    print(signer.mint())
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    async def run() -> dict[str, Any]:
        async with AuthSession(**_flow_kwargs(args)) as sf:
            token = await sf.token()
        return token.as_dict(show_token=args.show_token)

    print(json.dumps(asyncio.run(run()), indent=2))
    return 0


_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE", "HEAD")


def _cmd_request(args: argparse.Namespace) -> int:
    body: Any = None
    if args.data is not None:
        try:
            body = json.loads(args.data)
        except ValueError as exc:
            raise ConfigurationError(f"--data is not valid JSON: {exc}") from None

    async def run() -> tuple[int, str, bytes]:
        async with AuthSession(**_flow_kwargs(args)) as sf:
            kwargs: dict[str, Any] = {} if body is None else {"json": body}
            async with sf.request(args.method, args.path, **kwargs) as resp:
                return resp.status, resp.content_type, await resp.read()

    status, content_type, raw = asyncio.run(run())
    text = raw.decode("utf-8", "replace")
    parsed: Any = None
    if raw and content_type == "application/json":
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
    if raw:
        print(json.dumps(parsed, indent=2) if parsed is not None else text)
    if 200 <= status < 300:
        return 0
    first = parsed[0] if isinstance(parsed, list) and parsed else parsed
    if isinstance(first, dict) and ("errorCode" in first or "message" in first):
        detail = f"{first.get('errorCode', '-')}: {first.get('message', '')}"
    else:
        detail = text[:200] or "(empty body)"
    print(f"sfauth: error: HTTP {status} {detail}", file=sys.stderr)
    return 1


def _cmd_emulator(args: argparse.Namespace) -> int:
    from .testing import Emulator

    key_file: Path = args.key_file
    temporary = key_file is None
    if temporary:
        fd, name = tempfile.mkstemp(prefix="sfauth-emulator-", suffix=".pem")
        os.close(fd)
        key_file = Path(name)

    async def serve() -> None:
        async with Emulator(host=args.host, port=args.port) as emu:
            creds = emu.create_credentials()
            creds.write_private_key(key_file)
            url = emu.url
            if args.host in ("0.0.0.0", "::", ""):  # noqa: S104 - a bind address, shown as loopback
                url = url.replace(f"//{args.host}:", "//127.0.0.1:").replace(
                    "//[::]:", "//127.0.0.1:"
                )
            line = {
                "url": url,
                "client_id": creds.client_id,
                "username": creds.username,
                "audience": creds.audience,
                "private_key_file": str(key_file),
            }
            print(json.dumps(line), flush=True)
            await asyncio.Event().wait()

    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(
            f"sfauth: error: cannot serve on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        if temporary:
            key_file.unlink(missing_ok=True)
    return 0


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _cmd_demo(args: argparse.Namespace) -> int:
    return asyncio.run(_demo(args.requests, args.limit))


async def _demo(n: int, limit: int) -> int:
    from .testing import Emulator

    soql = "SELECT Id, Name FROM Account LIMIT 5"
    async with Emulator() as emu:
        creds = emu.create_credentials()
        print(f"sfauth demo: Salesforce emulator at {emu.url}")
        async with AuthSession(
            client_id=creds.client_id,
            username=creds.username,
            private_key=creds.private_key_pem,
            login_url=emu.url,
            allow_http_loopback=True,
            limit=limit,
        ) as sf:
            cfg = sf.auth.config
            print(f"  login        POST {cfg.token_url}")
            print(f"  assertion    iss={cfg.client_id} sub={cfg.username} aud={cfg.audience}")
            token = await sf.token()
            shown = token.as_dict()
            print(f"  token        {shown['access_token']} (masked)")
            print(f"  instance_url {token.instance_url}  org_id={token.org_id}")
            print(f"  user_id      {token.user_id}")
            print(f"  workload     {n} concurrent queries ({soql!r}), pool of {limit}")
            print(f"               every session expires after {n // 2} have finished")
            ok = 0
            failures: dict[str, int] = {}
            finished = 0

            async def one() -> None:
                nonlocal ok, finished
                try:
                    async with sf.get("/services/data/v62.0/query", params={"q": soql}) as resp:
                        body = await resp.json()
                        if resp.status == 200 and len(body["records"]) == 5:
                            ok += 1
                        else:
                            reason = f"HTTP {resp.status}"
                            failures[reason] = failures.get(reason, 0) + 1
                except (SFAuthError, aiohttp.ClientError, TimeoutError) as exc:
                    failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                finally:
                    finished += 1
                    if finished == n // 2:
                        emu.expire_all_sessions()

            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(n)))
            wall = time.perf_counter() - started
            failed = sum(failures.values())
            print()
            print(f"requests ok:     {ok}")
            print(f"requests failed: {failed}")
            for reason, count in sorted(failures.items()):
                print(f"  {reason}: {count}")
            replayed = emu.counters[("query", 401)]
            print(f"replayed on 401: {replayed} (sent with the expired session, replayed once)")
            print(
                f"token requests:  {emu.token_request_count} "
                "(first login + one refresh shared by every request that saw the expiry)"
            )
            print(f"wall time:       {wall:.2f} s ({n / wall:,.0f} requests/s)")
    return 0 if failed == 0 and ok == n else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
