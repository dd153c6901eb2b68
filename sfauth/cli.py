"""The ``sfauth`` command line: ``demo``, ``emulator``, ``assertion``, ``token`` and ``request``.

Flag names follow the Salesforce CLI's ``sf org login jwt`` (``--client-id``, ``--username``,
``--jwt-key-file``, ``--instance-url`` for the login host).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from . import __version__
from ._assertion import AssertionSigner
from ._cli_data import add_data_commands
from ._config import DEFAULT_LOGIN_URL, FlowConfig
from ._env import settings_from_env
from ._keys import load_private_key
from ._logging import redact_secrets
from ._session import AuthSession
from ._telemetry import prometheus
from .exceptions import ConfigurationError, CrossOriginError, SFAuthError

__all__ = ["main"]

_PASSPHRASE_ENV = "SF_JWT_KEY_PASSPHRASE"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when ``None``.

    Returns:
        The exit status: 0 on success, 1 when the operation failed (a request or the token
        exchange), 2 for bad arguments or configuration, 141 when the reader of standard output
        went away (``sfauth token | head``), as after a SIGPIPE.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser, commands = _parser()
    args, unknown = parser.parse_known_args(arguments)
    if unknown:
        # Blame the parser that was given the flag: its usage is the one that helps.
        before = arguments[: arguments.index(args.command)]
        blamed = parser if any(arg in before for arg in unknown) else commands[args.command]
        blamed.error(f"unrecognized arguments: {' '.join(unknown)}")
    _configure_logging(args.verbose + args.verbose_after)
    try:
        result: int = args.func(args)
    except ConfigurationError as exc:
        print(f"sfauth: error: {_in_cli_terms(str(exc), args.sources)}", file=sys.stderr)
        return 2
    except CrossOriginError as exc:  # PATH names another host: a bad argument
        print(f"sfauth: error: {exc}", file=sys.stderr)
        return 2
    except SFAuthError as exc:
        print(f"sfauth: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader closed the pipe: say nothing more (Python's documented recipe, so that
        # the interpreter's final flush of stdout does not fail too).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return result


#: Fixes that messages suggest in Python terms, as the CLI spells them.
_CLI_FIXES = (
    ("allow_http_loopback=True", "--allow-http-loopback (or set SF_ALLOW_HTTP_LOOPBACK=true)"),
    ("pass passphrase=...", f"set ${_PASSPHRASE_ENV}"),
    ("drop passphrase", f"unset ${_PASSPHRASE_ENV}"),
    ("goes in site=...", "goes in --site"),
)

#: AuthSession argument -> the flag that sets it, named when the value came from no variable.
_FLAGS = {
    "login_url": "--instance-url",
    "private_key": "--jwt-key-file",
    "allow_http_loopback": "--allow-http-loopback",
    "client_id": "--client-id",
    "username": "--username",
    "audience": "--audience",
    "site": "--site",
}

#: The library's wording for a key path that names no file, and the CLI's.
_NO_KEY_FILE = re.compile(
    r"private_key is not PEM text \(no '-----BEGIN \.\.\. PRIVATE KEY-----' line\) and no "
    r"file exists at (?P<path>.*); pass the PEM text or the path of the key file"
)

#: A value quoted by ``repr()`` in a message.
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _in_cli_terms(message: str, sources: Mapping[str, str]) -> str:
    """``message`` with AuthSession argument names replaced by where the CLI got each value.

    Args:
        message: A ``ConfigurationError`` message in Python terms (``private_key``, ...).
        sources: Argument name -> the flag or ``$VARIABLE`` its value came from; arguments
            not in it are named by their flag.

    Returns:
        The message in CLI terms.
    """
    for python, cli in _CLI_FIXES:
        message = message.replace(python, cli)
    key = sources.get("private_key", _FLAGS["private_key"])
    message = _NO_KEY_FILE.sub(
        lambda m: f"{key}: no file exists at {m['path']}; pass the path of a private key PEM file",
        message,
    )
    # The key's own wording ("the private_key file ...", "private_key bytes ...") first.
    message = message.replace("the private_key file", f"the {key} key file")
    message = message.replace("private_key bytes", key).replace("private_key text", key)
    for python, flag in _FLAGS.items():
        # The first whole word outside quoted values only: "username" and "site" are also
        # English words, and a URL such as 'https://site.example' is the user's own value.
        quoted = [m.span() for m in _QUOTED.finditer(message)]
        for found in re.finditer(rf"(?<![\w$-]){python}\b", message):
            if not any(start < found.start() < end for start, end in quoted):
                cli = sources.get(python, flag)
                message = message[: found.start()] + cli + message[found.end() :]
                break
    return message


def _verbosity(dest: str) -> argparse.ArgumentParser:
    """A parent parser with ``-v``; before and after the command count separately.

    Args:
        dest: The attribute the count is stored in.

    Returns:
        A parser to pass in ``parents=``.
    """
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        dest=dest,
        help="log sfauth events to stderr (-v info, -vv debug); warnings and retries are "
        "shown without it",
    )
    return parent


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser, and each command's parser by name."""
    parser = argparse.ArgumentParser(
        prog="sfauth",
        description="Salesforce OAuth 2.0 JWT bearer flow: tokens, assertions, an emulator.",
        parents=[_verbosity("verbose")],
    )
    parser.add_argument("--version", action="version", version=f"sfauth {__version__}")
    parser.set_defaults(sources={})
    # The subcommand's own -v lands in another attribute: the subcommand's defaults replace
    # the top level's values, which would reset `sfauth -v token` to 0.
    verbose_after = _verbosity("verbose_after")
    sub = parser.add_subparsers(required=True, metavar="COMMAND", dest="command")

    demo = sub.add_parser(
        "demo",
        parents=[verbose_after],
        help="run concurrent queries with a mid-run session expiry against the emulator",
        description="Start the embedded Salesforce emulator, log in with a generated key, run "
        "concurrent queries through one AuthSession, expire every session mid-run, and print "
        "a summary. Exits 0 only when no request failed.",
    )
    demo.add_argument("--requests", type=_positive_int, default=3000, help="default 3000")
    demo.add_argument(
        "--limit", type=_positive_int, default=100, help="connection pool size (default 100)"
    )
    demo.add_argument(
        "--metrics",
        type=_listen_address,
        metavar="[HOST:]PORT",
        help="serve the session's OpenTelemetry metrics for Prometheus at "
        "http://HOST:PORT/metrics while the demo runs (HOST defaults to 127.0.0.1; port 0 "
        "picks a free one); needs pip install '/path/to/sfauth[prometheus]'",
    )
    demo.add_argument(
        "--hold",
        action="store_true",
        help="with --metrics: keep serving them after the run until Ctrl-C",
    )
    demo.set_defaults(func=_cmd_demo)

    emulator = sub.add_parser(
        "emulator",
        parents=[verbose_after],
        help="serve the Salesforce emulator and print its credentials as one JSON line",
    )
    emulator.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    emulator.add_argument("--port", type=_port, default=0, help="0 picks a free port")
    emulator.add_argument(
        "--key-file",
        type=_key_file,
        default=None,
        help="a new file to write the emulator's generated private key to, kept after it "
        "stops; an existing file is refused (default: a temporary file, deleted when the "
        "emulator stops)",
    )
    emulator.add_argument(
        "--describe",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="load an object's describe JSON captured from your org (the REST "
        "/sobjects/{name}/describe body or `sf sobject describe --json` output) into the "
        "emulator's schema; repeatable",
    )
    emulator.set_defaults(func=_cmd_emulator)

    request = sub.add_parser(
        "request",
        parents=[verbose_after],
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
        cmd = (
            request
            if name == "request"
            else sub.add_parser(name, parents=[verbose_after], help=helptext)
        )
        _identity_flags(cmd, key=True)
        cmd.set_defaults(func=func)
        if name == "token":
            cmd.add_argument(
                "--show-token",
                action="store_true",
                help="print the access token in clear (it is masked by default)",
            )
    store = sub.add_parser(
        "store",
        parents=[verbose_after],
        help="show or clear what a fleet shares in Redis: refusal memory, login count",
        description="Operate on the fleet state a RedisTokenStore keeps for one integration "
        "(client id, username, login URL, audience). 'status' prints the remembered refusal "
        "or login-rate back-off, if any, and the user's logins in the last hour, as JSON; "
        "'clear' lifts the refusal memory and the back-off so the next request logs in at "
        "once. No private key is needed.",
    )
    store.add_argument("action", choices=("status", "clear"), metavar="{status,clear}")
    store.add_argument("--redis", help="Redis URL of the fleet's RedisTokenStore [$SF_REDIS_URL]")
    store.add_argument(
        "--prefix", default="sfauth:", help="the store's key prefix (default sfauth:)"
    )
    _identity_flags(store)
    store.set_defaults(func=_cmd_store)
    add_data_commands(sub, verbose_after, _identity_flags, _flow_kwargs)
    return parser, dict(sub.choices)


def _identity_flags(cmd: argparse.ArgumentParser, *, key: bool = False) -> None:
    """The flags naming an integration, and its key file when ``key``."""
    cmd.add_argument("--client-id", help="connected app consumer key [$SF_CLIENT_ID]")
    cmd.add_argument("--username", help="Salesforce username (sub) [$SF_USERNAME]")
    if key:
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
        default=None,
        help="allow http:// for localhost/127.0.0.1 (the emulator) "
        "[$SF_ALLOW_HTTP_LOOPBACK: true/false, 1/0, yes/no]",
    )


#: The exporter's ``otel_scope_*`` labels: the same on every sfauth series, left out when shown.
_SCOPE_LABELS = re.compile(r'otel_scope_\w+="[^"]*",?')


def _listen_address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` -> ``(host, port)``; the host defaults to ``127.0.0.1``.

    An IPv6 host is written in brackets: ``[::1]:9464``.
    """
    host, _, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]") and len(host) > 2
    if (
        not port.isdigit()
        or int(port) > 65535
        or (("[" in host or "]" in host or ":" in host) and not bracketed)
    ):
        raise argparse.ArgumentTypeError(
            f"must be [HOST:]PORT with PORT 0-65535 (an IPv6 HOST in brackets), got {text!r}"
        )
    return (host[1:-1] if bracketed else host) or "127.0.0.1", int(port)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"must be a port number from 0 to 65535 (0 picks a free port), got {text!r}"
        )
    return value


def _key_file(text: str) -> Path:
    """A ``--key-file`` path whose directory exists (writing it can still fail later).

    Args:
        text: The flag's value.

    Returns:
        The path.

    Raises:
        argparse.ArgumentTypeError: The path is a directory or exists, or its directory does
            not exist.
    """
    path = Path(text)
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(
            f"cannot write the key file {text}: it is a directory; pass a file path"
        )
    if os.path.lexists(path):
        raise argparse.ArgumentTypeError(
            f"the key file {text} exists: the emulator writes the private key it generates "
            "there and never overwrites a file (it might be your own key); pass a new path"
        )
    directory = path.parent
    if not os.path.isdir(directory):
        raise argparse.ArgumentTypeError(
            f"cannot write the key file {text}: directory {directory} does not exist; "
            "create it or pass a path in an existing directory"
        )
    return path


_RETRY_EVENT = "sfauth.retry.scheduled"
#: Warnings the CLI reports itself: each failed token attempt that is retried is announced
#: by its retry notice, and the last one ends the command with one error line.
_QUIET_AT_DEFAULT = frozenset({"sfauth.token.failed"})
_LEVEL_NUMBERS = logging.getLevelNamesMapping()


def _configure_logging(verbose: int) -> None:
    """Send sfauth's structlog events to stderr.

    Without ``-v``: warnings and errors, plus one ``sfauth: waiting for ...`` line per
    scheduled retry, in the CLI's own short format. ``-v`` adds info events and ``-vv`` debug
    events, rendered by structlog's console renderer with timestamps.

    Args:
        verbose: How many ``-v`` were given, before and after the command together.
    """
    if verbose:
        level = logging.INFO if verbose == 1 else logging.DEBUG
        processors: list[Any] = [
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.dev.ConsoleRenderer(colors=False),
        ]
    else:
        level = logging.INFO  # retry notices are info events; _default_filter drops the rest
        processors = [
            structlog.processors.add_log_level,
            _default_filter,
            structlog.processors.format_exc_info,
            redact_secrets,
            _render_brief,
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


def _default_filter(
    _logger: Any, _method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Keep warnings, errors and retry notices; drop the rest."""
    event = event_dict.get("event")
    if event == _RETRY_EVENT:
        return event_dict
    level = _LEVEL_NUMBERS.get(str(event_dict.get("level", "")).upper(), logging.INFO)
    if level < logging.WARNING or event in _QUIET_AT_DEFAULT:
        raise structlog.DropEvent
    return event_dict


def _render_brief(_logger: Any, _method_name: str, event_dict: MutableMapping[str, Any]) -> str:
    """One ``sfauth: ...`` line: what a retry waits for, or the warning and its fields."""
    fields = dict(event_dict)
    event = fields.pop("event", "")
    level = fields.pop("level", "warning")
    if event == _RETRY_EVENT:
        target = (
            f"POST {fields['token_url']}"
            if "token_url" in fields
            else f"{fields.get('method', '')} {fields.get('url', '')}".strip()
        )
        return (
            f"sfauth: waiting for {target} (retrying in {fields.get('wait', 0):.1f} s after "
            f"attempt {fields.get('attempt', '?')}: {fields.get('reason') or 'failed'})"
        )
    shown = " ".join(f"{key}={_value(value)}" for key, value in fields.items())
    return f"sfauth: {level}: {event}" + (f" {shown}" if shown else "")


def _value(value: object) -> str:
    """A field value as structlog's console renderer shows it: quoted only when needed."""
    if isinstance(value, str) and value and not any(c.isspace() for c in value):
        return value
    return repr(value)


#: CLI flag -> AuthSession argument; a flag given on the command line wins over $SF_*.
_FLAG_ARGUMENTS = (
    ("client_id", "client_id"),
    ("username", "username"),
    ("jwt_key_file", "private_key"),
    ("instance_url", "login_url"),
    ("audience", "audience"),
    ("site", "site"),
    ("allow_http_loopback", "allow_http_loopback"),
)

#: AuthSession argument -> the variable settings_from_env reads it from.
_VARIABLES = {
    "client_id": "SF_CLIENT_ID",
    "username": "SF_USERNAME",
    "audience": "SF_AUDIENCE",
    "site": "SF_SITE",
    "allow_http_loopback": "SF_ALLOW_HTTP_LOOPBACK",
}


def _flow_kwargs(args: argparse.Namespace, *, key: bool = True) -> dict[str, Any]:
    """AuthSession arguments from the flags, the rest from ``SF_*`` environment variables.

    Records in ``args.sources`` where each value came from (``--flag`` or ``$VARIABLE``), so
    that error messages name what the user has to change.

    Args:
        args: The parsed command line.
        key: Whether the private key is required.
    """
    given = {
        argument: getattr(args, flag)
        for flag, argument in _FLAG_ARGUMENTS
        if getattr(args, flag, None) is not None
    }
    if "private_key" in given:
        given["private_key"] = Path(given["private_key"])
    unneeded = () if key else ("private_key",)
    try:
        settings = settings_from_env(provided=[*given, "api_version", *unneeded])
    except ConfigurationError as exc:
        if not str(exc).startswith("missing environment variable"):
            raise
        raise ConfigurationError(f"{exc}; or pass the matching flags (see --help)") from None
    sources = {argument: _FLAGS[argument] for argument in given}
    for argument, variable in _VARIABLES.items():
        if argument in settings:
            sources[argument] = f"${variable}"
    if "private_key" in settings:
        file = isinstance(settings["private_key"], Path)
        sources["private_key"] = "$SF_JWT_KEY_FILE" if file else "$SF_JWT_KEY"
    if "login_url" in settings:
        login_url = os.environ.get("SF_LOGIN_URL", "").strip()
        sources["login_url"] = "$SF_LOGIN_URL" if login_url else "$SF_INSTANCE_URL"
    args.sources = sources
    settings.update(given)
    settings.setdefault("allow_http_loopback", False)
    return settings


def _flow_config(kwargs: Mapping[str, Any]) -> FlowConfig:
    """The validated login settings of ``_flow_kwargs``' result (no key needed)."""
    return FlowConfig.create(
        client_id=kwargs["client_id"],
        username=kwargs["username"],
        login_url=kwargs.get("login_url", DEFAULT_LOGIN_URL),
        audience=kwargs.get("audience"),
        site=kwargs.get("site", ""),
        allow_http_loopback=kwargs["allow_http_loopback"],
    )


def _cmd_assertion(args: argparse.Namespace) -> int:
    kwargs = _flow_kwargs(args)
    config = _flow_config(kwargs)
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


def _cmd_store(args: argparse.Namespace) -> int:
    from ._fleet import LOGINS_PER_HOUR, user_key
    from .stores import RedisTokenStore
    from .stores._base import store_key

    kwargs = _flow_kwargs(args, key=False)
    config = _flow_config(kwargs)
    url = args.redis or os.environ.get("SF_REDIS_URL", "").strip()
    if not url:
        raise ConfigurationError(
            "no Redis URL: pass --redis redis://HOST:6379/0 or set SF_REDIS_URL"
        )
    key = store_key(config.token_url, config.client_id, config.username, config.audience)

    user = user_key(config.username)

    async def shown(store: RedisTokenStore, where: str) -> dict[str, Any] | None:
        found = await store.refusal(where)
        if found is None:
            return None
        remembered, left = found
        return {
            "error": remembered.error,
            "error_description": remembered.error_description,
            "status": remembered.status,
            "kind": remembered.kind,
            "age": round(max(time.time() - remembered.at, 0.0), 1),
            "retry_in": round(left, 1),
        }

    async def run() -> dict[str, Any]:
        async with RedisTokenStore(url, prefix=args.prefix, on_unavailable="raise") as store:
            if args.action == "clear":
                cleared = await store.clear_refusal(key)
                cleared = await store.clear_refusal(f"logins:{user}") or cleared
                return {"cleared": cleared}
            return {
                "prefix": args.prefix,
                "token_url": config.token_url,
                "client_id": config.client_id,
                "username": config.username,
                "audience": config.audience,
                "refusal": await shown(store, key),
                "login_backoff": await shown(store, f"logins:{user}"),
                "logins_last_hour": await store.logins(user),
                "login_rate_limit": LOGINS_PER_HOUR,
                "refresh_locked": await store.locked(key),
            }

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

    from .testing import SchemaError

    async def serve() -> None:
        async with Emulator(host=args.host, port=args.port) as emu:
            for describe in args.describe:
                emu.schema.load_describe(describe)
            creds = emu.create_credentials()
            try:
                creds.write_private_key(key_file)
            except OSError as exc:
                raise _KeyFileError(
                    f"cannot write the key file {key_file}: {exc.strerror or exc}; pass "
                    "--key-file a path you can write"
                ) from None
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
    except (_KeyFileError, SchemaError) as exc:
        print(f"sfauth: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        raise  # the reader of the JSON line went away: main() ends quietly
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


class _KeyFileError(Exception):
    """The emulator's key file could not be written (not an OSError: not a serving error)."""


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.hold and args.metrics is None:
        print("sfauth demo: --hold needs --metrics", file=sys.stderr)
        return 2
    if args.metrics is None:
        return asyncio.run(_demo(args.requests, args.limit))
    try:
        provider, scrape, content_type = prometheus()
    except ImportError as exc:
        print(f"sfauth demo: {exc}", file=sys.stderr)
        return 2
    holding: list[bool] = []
    try:
        return asyncio.run(_demo_with_metrics(args, provider, scrape, content_type, holding))
    except KeyboardInterrupt:
        return 0 if holding else 130  # --hold ends with Ctrl-C; the run itself did not finish
    finally:
        provider.shutdown()


async def _demo_with_metrics(
    args: argparse.Namespace,
    provider: Any,
    scrape: Any,
    content_type: str,
    holding: list[bool],
) -> int:
    """The demo with its metrics served for Prometheus by an aiohttp server.

    ``holding`` gets an entry once the run is over and ``--hold`` keeps serving.
    """
    from aiohttp import web

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=scrape(), headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = args.metrics
    try:
        shown = f"[{host}]" if ":" in host else host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.create_server((host, port), family=family)
        except OSError as exc:
            print(f"sfauth demo: cannot serve metrics on {shown}:{port}: {exc}", file=sys.stderr)
            return 2
        await web.SockSite(runner, sock).start()
        url = f"http://{shown}:{sock.getsockname()[1]}/metrics"
        print(f"sfauth demo: metrics for Prometheus at {url}")

        async def show() -> None:  # scraped while the session is open: its gauges report
            async with aiohttp.ClientSession() as http, http.get(url) as resp:
                text = await resp.text()
            print()
            print(f"metrics ({url}, sfauth's series):")
            for line in text.splitlines():
                if line.startswith("sfauth_") and "_bucket{" not in line:
                    print(f"  {_SCOPE_LABELS.sub('', line).replace('{}', '')}")

        status = await _demo(args.requests, args.limit, meter_provider=provider, before_close=show)
        if args.hold:
            print(f"serving {url} until Ctrl-C")
            holding.append(True)
            await asyncio.Event().wait()
        return status
    finally:
        await runner.cleanup()


async def _demo(
    n: int,
    limit: int,
    *,
    meter_provider: object | None = None,
    before_close: Callable[[], Awaitable[None]] | None = None,
) -> int:
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
            meter_provider=meter_provider,
        ) as sf:
            cfg = sf.auth.config
            print(f"  login        POST {cfg.token_url}")
            print(f"  assertion    iss={cfg.client_id} sub={cfg.username} aud={cfg.audience}")
            token = await sf.token()
            shown = token.as_dict()
            print(f"  token        {shown['access_token']} (masked)")
            print(f"  instance_url {token.instance_url}  org_id={token.org_id}")
            print(f"  user_id      {token.user_id}")
            expire_after = max(n // 2, 1)
            print(f"  workload     {n} concurrent queries ({soql!r}), pool of {limit}")
            print(f"               every session expires after {expire_after} have finished")
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
                    if finished == expire_after:
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
            logins = emu.token_request_count
            if replayed:
                print(
                    f"replayed on 401: {replayed} (sent with the expired session, replayed once)"
                )
            else:
                print("replayed on 401: 0 (no request was sent with the expired session)")
            print(f"token requests:  {logins} ({_explain_logins(logins, replayed)})")
            print(f"wall time:       {wall:.2f} s ({n / wall:,.0f} requests/s)")
            if before_close is not None:
                await before_close()
    return 0 if failed == 0 and ok == n else 1


def _explain_logins(logins: int, replayed: int) -> str:
    """What the demo's token requests were, from the emulator's counters."""
    refreshes = logins - 1
    if not replayed:
        if refreshes <= 0:
            return "the first login; no request saw the expiry, so nothing was refreshed"
        return f"the first login + {refreshes} more, although no request saw the expiry"
    if refreshes == 1:
        return "first login + one refresh shared by every request that saw the expiry"
    if refreshes <= 0:
        return "the first login only, although requests saw the expiry"
    return f"first login + {refreshes} refreshes for the requests that saw the expiry"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
