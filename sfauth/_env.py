r"""``AuthSession`` settings from environment variables.

The variable names follow the Salesforce CLI where it has one (``SF_INSTANCE_URL`` is the CLI's
name for the login host)::

    SF_CLIENT_ID            required  the connected app's consumer key
    SF_USERNAME             required  the Salesforce user the integration acts as
    SF_JWT_KEY_FILE         one of    path of the private key PEM file
    SF_JWT_KEY              these     the private key PEM itself (literal \n allowed)
    SF_JWT_KEY_PASSPHRASE   optional  passphrase of an encrypted key
    SF_LOGIN_URL            optional  login host (SF_INSTANCE_URL is accepted as well)
    SF_AUDIENCE             optional  the aud claim (derived from the login host by default)
    SF_SITE                 optional  Experience Cloud path prefix, e.g. /customers
    SF_API_VERSION          optional  "latest" or a version such as 62.0
    SF_ALLOW_HTTP_LOOPBACK  optional  true/false, 1/0 or yes/no (any case): allow plain http
                                      to localhost/127.0.0.1, e.g. for ``sfauth emulator``
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ._query import normalize_api_version
from .exceptions import ConfigurationError

__all__ = ["settings_from_env"]

_PEM_BEGIN = "-----BEGIN"

#: Spellings of ``SF_ALLOW_HTTP_LOOPBACK``, compared case-insensitively.
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def settings_from_env(
    environ: Mapping[str, str] | None = None,
    *,
    prefix: str = "SF_",
    provided: Iterable[str] = (),
) -> dict[str, Any]:
    r"""Read ``AuthSession`` keyword arguments from environment variables.

    ``AuthSession(**settings_from_env())`` builds a session from ``SF_CLIENT_ID``,
    ``SF_USERNAME``, ``SF_JWT_KEY_FILE`` (a path) or ``SF_JWT_KEY`` (the PEM text; newlines may
    be written as a literal ``\n``), and the optional ``SF_JWT_KEY_PASSPHRASE``,
    ``SF_LOGIN_URL`` (or ``SF_INSTANCE_URL``, the Salesforce CLI's name for the login host),
    ``SF_AUDIENCE``, ``SF_SITE``, ``SF_API_VERSION`` and ``SF_ALLOW_HTTP_LOOPBACK``
    (``true``/``false``, ``1``/``0`` or ``yes``/``no`` in any case: allow plain http to a
    loopback host such as ``sfauth emulator``). Unset and empty variables are left out of the
    result, so ``AuthSession``'s defaults apply. The URLs are checked by ``AuthSession``
    itself. No error message ever contains the key or the passphrase.

    Args:
        environ: Where to read the variables; ``os.environ`` when ``None``.
        prefix: Prefix of every variable name (``"SF_"``); ``"PROD_SF_"`` reads
            ``PROD_SF_CLIENT_ID`` and so on.
        provided: ``AuthSession`` argument names the caller supplies itself (for example the
            overrides of ``AuthSession.from_env``): their variables are then not required.
            Use ``"private_key"`` for the key variables.

    Returns:
        Keyword arguments for ``AuthSession``: ``client_id``, ``username``, ``private_key``
        (a ``Path`` for ``SF_JWT_KEY_FILE``, PEM ``bytes`` for ``SF_JWT_KEY``), and those of
        ``passphrase``, ``login_url``, ``audience``, ``site``, ``api_version`` and
        ``allow_http_loopback`` (a ``bool``) that are set.

    Raises:
        ConfigurationError: Required variables are missing (all of them are named), both
            ``SF_JWT_KEY_FILE`` and ``SF_JWT_KEY`` are set, ``SF_LOGIN_URL`` and
            ``SF_INSTANCE_URL`` disagree, ``SF_JWT_KEY`` is not PEM text,
            ``SF_API_VERSION`` is malformed, or ``SF_ALLOW_HTTP_LOOPBACK`` is not one of the
            accepted values.
    """
    if not isinstance(prefix, str):
        raise ConfigurationError(f"prefix must be a string such as 'SF_'; got {prefix!r}")
    env: Mapping[str, str] = os.environ if environ is None else environ
    given = set(provided)

    def var(name: str, *, strip: bool = True) -> str | None:
        value = env.get(prefix + name)
        if value is None:
            return None
        if strip:
            value = value.strip()
        return value if value.strip() else None

    settings: dict[str, Any] = {}
    missing: list[str] = []
    for name, arg in (("CLIENT_ID", "client_id"), ("USERNAME", "username")):
        value = None if arg in given else var(name)
        if value is not None:
            settings[arg] = value
        elif arg not in given:
            missing.append(prefix + name)

    # Variables of arguments the caller provides are not read at all: the caller's value wins.
    key_file = None if "private_key" in given else var("JWT_KEY_FILE")
    key_text = None if "private_key" in given else var("JWT_KEY", strip=False)
    if key_file is not None and key_text is not None:
        raise ConfigurationError(
            f"both {prefix}JWT_KEY_FILE and {prefix}JWT_KEY are set; set only one: the path of "
            "the private key file, or the PEM text itself"
        )
    if key_file is not None:
        if _PEM_BEGIN in key_file:
            raise ConfigurationError(
                f"{prefix}JWT_KEY_FILE holds PEM text, not a path; put the key itself in "
                f"{prefix}JWT_KEY (or its file's path in {prefix}JWT_KEY_FILE)"
            )
        settings["private_key"] = Path(key_file)
    elif key_text is not None:
        settings["private_key"] = _pem(key_text, f"{prefix}JWT_KEY", f"{prefix}JWT_KEY_FILE")
    elif "private_key" not in given:
        missing.append(f"{prefix}JWT_KEY_FILE or {prefix}JWT_KEY")
    if missing:
        raise ConfigurationError(
            f"missing environment variable{'s' if len(missing) > 1 else ''}: "
            f"{', '.join(missing)} (set, and not empty)"
        )

    passphrase = None if "passphrase" in given else var("JWT_KEY_PASSPHRASE", strip=False)
    if passphrase is not None:
        settings["passphrase"] = passphrase

    login_url = None if "login_url" in given else var("LOGIN_URL")
    instance_url = None if "login_url" in given else var("INSTANCE_URL")
    if (
        login_url is not None
        and instance_url is not None
        and login_url.rstrip("/") != instance_url.rstrip("/")
    ):
        raise ConfigurationError(
            f"{prefix}LOGIN_URL and {prefix}INSTANCE_URL are both set and differ; both name "
            f"the login host ({prefix}INSTANCE_URL as in the Salesforce CLI): set one of them"
        )
    login = login_url if login_url is not None else instance_url
    if login is not None:
        settings["login_url"] = login

    audience = None if "audience" in given else var("AUDIENCE")
    if audience is not None:
        settings["audience"] = audience
    site = None if "site" in given else var("SITE")
    if site is not None:
        settings["site"] = site
    api_version = None if "api_version" in given else var("API_VERSION")
    if api_version is not None:
        settings["api_version"] = normalize_api_version(api_version, name=f"{prefix}API_VERSION")
    loopback = None if "allow_http_loopback" in given else var("ALLOW_HTTP_LOOPBACK")
    if loopback is not None:
        settings["allow_http_loopback"] = _boolean(loopback, f"{prefix}ALLOW_HTTP_LOOPBACK")
    return settings


def _boolean(text: str, name: str) -> bool:
    """``text`` as a boolean, or a ``ConfigurationError`` naming ``name`` and the spellings."""
    try:
        return _BOOLEANS[text.lower()]
    except KeyError:
        raise ConfigurationError(
            f"{name} must be one of true, false, 1, 0, yes, no (any case); got {text[:40]!r}"
        ) from None


def _pem(text: str, name: str, file_name: str) -> bytes:
    r"""The PEM bytes of an inline key, with literal ``\n`` turned into newlines."""
    text = text.strip()
    if _PEM_BEGIN not in text:
        raise ConfigurationError(
            f"{name} does not hold PEM text (no '-----BEGIN ... PRIVATE KEY-----' line); "
            f"put a key file's path in {file_name} instead"
        )
    if "\n" not in text and "\\n" in text:
        text = text.replace("\\n", "\n")
    return text.encode()
