"""Validated settings of the JWT bearer flow (pure; no I/O).

The token URL and the audience are separate settings (design.md section 2): posting to a My
Domain host while ``aud`` stays ``https://login.salesforce.com`` is the normal setup.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from ._logging import scrub
from .exceptions import ConfigurationError

__all__ = [
    "DEFAULT_LOGIN_URL",
    "PRODUCTION_AUDIENCE",
    "SANDBOX_AUDIENCE",
    "FlowConfig",
    "default_audience",
    "is_loopback_host",
]

DEFAULT_LOGIN_URL = "https://login.salesforce.com"
PRODUCTION_AUDIENCE = "https://login.salesforce.com"
SANDBOX_AUDIENCE = "https://test.salesforce.com"
TOKEN_PATH = "/services/oauth2/token"


def is_loopback_host(host: str | None) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback IP address (127.0.0.0/8, ``::1``)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_audience(login_url: str, site: str = "") -> str:
    """Derive the ``aud`` claim from the login URL, as Salesforce expects it.

    Args:
        login_url: Scheme and host of the token endpoint, no path.
        site: Experience Cloud path prefix (``"/customers"``) or ``""``.

    Returns:
        The site URL (``login_url + site``) when ``site`` is set; ``https://test.salesforce.com``
        for ``test.salesforce.com`` and ``*.sandbox.my.salesforce.com`` hosts; otherwise
        ``https://login.salesforce.com`` (which also serves My Domain hosts).
    """
    if site:
        return login_url + site
    host = (urlsplit(login_url).hostname or "").lower()
    if host == "test.salesforce.com" or host.endswith(".sandbox.my.salesforce.com"):
        return SANDBOX_AUDIENCE
    return PRODUCTION_AUDIENCE


@dataclass(frozen=True, slots=True)
class FlowConfig:
    """The validated, non-secret settings of one JWT bearer integration.

    Build it with ``FlowConfig.create``; the constructor does not validate.
    """

    client_id: str
    username: str
    login_url: str
    audience: str
    site: str
    token_url: str
    allow_http_loopback: bool

    @classmethod
    def create(
        cls,
        *,
        client_id: str,
        username: str,
        login_url: str = DEFAULT_LOGIN_URL,
        audience: str | None = None,
        site: str = "",
        allow_http_loopback: bool = False,
    ) -> FlowConfig:
        """Validate the settings and derive ``audience`` and ``token_url``.

        Args:
            client_id: The connected app's consumer key; non-empty.
            username: The Salesforce username the app acts as; non-empty.
            login_url: ``https://`` scheme and host (optionally port) of the token endpoint,
                e.g. ``https://login.salesforce.com``, ``https://test.salesforce.com`` or a My
                Domain URL; no path, query or fragment. A trailing ``/`` is dropped.
            audience: The ``aud`` claim; derived by ``default_audience`` when ``None``.
            site: Experience Cloud path prefix starting with ``/`` (``"/customers"``), or ``""``.
            allow_http_loopback: Permit ``http://`` for loopback hosts (local emulators only).

        Returns:
            The frozen configuration; ``token_url`` is ``{login_url}{site}/services/oauth2/token``.

        Raises:
            ConfigurationError: A value is empty or malformed; the message says which and why.
        """
        if not isinstance(allow_http_loopback, bool):
            raise ConfigurationError(
                f"allow_http_loopback must be True or False; got {allow_http_loopback!r}"
            )
        if not isinstance(client_id, str) or not client_id.strip():
            raise ConfigurationError("client_id is empty; pass the connected app's consumer key")
        if not isinstance(username, str) or not username.strip():
            raise ConfigurationError(
                "username is empty; pass the Salesforce username the integration acts as"
            )
        login_url = check_base_url("login_url", login_url, allow_http_loopback=allow_http_loopback)
        if not isinstance(site, str):
            raise ConfigurationError("site must be a string path prefix such as '/customers'")
        site = site.rstrip("/")
        if site and (not site.startswith("/") or "?" in site or "#" in site):
            raise ConfigurationError(
                f"site must be a path prefix starting with '/' (e.g. '/customers'); got {site!r}"
            )
        if audience is None:
            audience = default_audience(login_url, site)
        elif not isinstance(audience, str) or not urlsplit(audience).scheme:
            raise ConfigurationError(
                "audience must be a URL with scheme, e.g. 'https://login.salesforce.com' "
                f"(a single string, not a bare host); got {audience!r}"
            )
        return cls(
            client_id=client_id.strip(),
            username=username.strip(),
            login_url=login_url,
            audience=audience,
            site=site,
            token_url=f"{login_url}{site}{TOKEN_PATH}",
            allow_http_loopback=allow_http_loopback,
        )


def check_base_url(name: str, url: str, *, allow_http_loopback: bool) -> str:
    """Validate a scheme-and-host URL setting and return it without a trailing slash.

    Args:
        name: The setting's name, for the error message.
        url: The value to check.
        allow_http_loopback: Permit ``http://`` when the host is loopback.

    Returns:
        ``url`` without a trailing ``/``.

    Raises:
        ConfigurationError: No scheme or host, a path/query/fragment, credentials in the URL,
            or plain ``http`` where it is not allowed.
    """
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"{name} must be a URL such as {DEFAULT_LOGIN_URL!r}")
    url = url.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise ConfigurationError(f"{name} {scrub(url)[:200]!r} is not a valid URL") from None
    # Shown in errors without credentials, query or fragment (they may hold secrets).
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    hidden = " (query and fragment not shown)" if parts.query or parts.fragment else ""
    shown = repr(scrub(urlunsplit((parts.scheme, netloc, parts.path, "", ""))[:200])) + hidden
    if parts.username or parts.password:
        raise ConfigurationError(f"{name} must not contain credentials")
    if not parts.scheme or not parts.hostname:
        raise ConfigurationError(
            f"{name} {shown} needs a scheme and a host, e.g. {DEFAULT_LOGIN_URL!r}"
        )
    if parts.path or parts.query or parts.fragment:
        raise ConfigurationError(
            f"{name} {shown} must be only scheme and host (no path, query or fragment); "
            "an Experience Cloud prefix goes in site=..."
        )
    if parts.scheme == "https":
        return url
    if parts.scheme == "http":
        if not is_loopback_host(parts.hostname):
            raise ConfigurationError(f"{name} {shown} uses plain http; Salesforce requires https")
        if not allow_http_loopback:
            raise ConfigurationError(
                f"{name} {shown} uses plain http; pass allow_http_loopback=True to talk to a "
                "local emulator over http"
            )
        return url
    raise ConfigurationError(f"{name} {shown} must use https")
