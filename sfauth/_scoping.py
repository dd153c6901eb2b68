"""Origin scoping: which requests carry the bearer, and where a request to the org goes."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import ClientRequest, hdrs
from yarl import URL

from .exceptions import ConfigurationError, CrossOriginError, SessionClosedError

__all__ = [
    "Origin",
    "close_idle",
    "closed_error",
    "closed_not_cancelled",
    "open_session",
    "origin_of",
    "rebind",
    "request_origin",
    "resolve",
    "where",
]

#: ``(scheme, host, port)`` with the default port made explicit.
Origin = tuple[str, str, int | None]


def origin_of(url: str) -> Origin:
    """``(scheme, host, port)`` of an absolute URL, with the default port made explicit."""
    parsed = URL(url)
    return (parsed.scheme, parsed.raw_host or "", parsed.port)


def request_origin(request: ClientRequest) -> Origin:
    """The origin a request is addressed to (its current hop, after any redirect)."""
    url = request.url
    return (url.scheme, url.raw_host or "", url.port)


def where(request: ClientRequest) -> str:
    """The request's URL for a log event or an error: without query string or fragment."""
    return str(request.url.with_user(None).with_query(None).with_fragment(None))


def open_session(request: ClientRequest) -> aiohttp.ClientSession:
    """The request's session.

    Raises:
        SessionClosedError: It was closed while the request was being sent, retried or
            waiting for a token.
    """
    session = request.session
    if session.closed:
        raise SessionClosedError(
            f"the HTTP session was closed while {request.method} {where(request)} was still "
            "being sent, retried or waiting for a token"
        )
    return session


def closed_error(method: str, url: str, *, sent: bool | None) -> SessionClosedError:
    """The error for a request cut off by its session's close.

    Args:
        method: The request's method.
        url: Its URL (shown without the query string, at most 200 characters).
        sent: Whether it had been sent (``None``: it may have been).
    """
    shown = url.split("?", 1)[0][:200]
    if sent is False:
        what = f"before {method} {shown} was sent"
    else:
        what = f"before {method} {shown} was answered ({'it had' if sent else 'it may have'} "
        what += "reached Salesforce: resend it only if it may be sent twice)"
    return SessionClosedError(f"the session was closed {what}; open it again to send more")


def closed_after_rejection(method: str, url: str) -> SessionClosedError:
    """The error for a request whose session closed while it waited to be sent again after a 401.

    Salesforce rejected the request's session (``INVALID_SESSION_ID``) and did nothing with
    it, so, unlike other requests cut off by a close, it may be sent again as it is.
    """
    shown = url.split("?", 1)[0][:200]
    return SessionClosedError(
        f"the session was closed before {method} {shown} was sent again after a 401; "
        "Salesforce had rejected its session and done nothing with it, so it is safe to "
        "resend once the session is open again"
    )


def closed_not_cancelled(
    http: aiohttp.ClientSession, method: str, url: str
) -> SessionClosedError | None:
    """What a ``CancelledError`` out of aiohttp means for a request on ``http``.

    aiohttp's close cancels the requests waiting for a pooled connection, though nothing
    cancelled their tasks: for those, the ``SessionClosedError`` to raise instead. ``None``
    for a real cancellation (the task is being cancelled, or ``http`` is open): re-raise it.
    """
    if not http.closed:
        return None
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        return None
    return closed_error(method, url, sent=None)  # a first attempt, or a retry of a sent one


def rebind(request: ClientRequest, instance_url: str) -> None:
    """Point ``request`` at ``instance_url``'s origin, keeping its path and query.

    Called once the org has moved to ``instance_url``: the session's idle pooled connections
    to the origin the request leaves are closed too (``close_idle``).
    """
    base = URL(instance_url)
    old = request.url
    request.url = URL.build(
        scheme=base.scheme,
        host=base.raw_host or "",
        port=base.explicit_port,
        path=old.raw_path,
        query_string=old.raw_query_string,
        encoded=True,
    )
    host = request.url.host_port_subcomponent
    if host is not None:
        request.headers[hdrs.HOST] = host
    if (old.scheme, old.raw_host, old.port) != request_origin(request):  # not a respelling
        close_idle(request.session.connector, old)


def close_idle(connector: aiohttp.BaseConnector | None, url: URL) -> None:
    """Close ``connector``'s idle pooled connections to ``url``'s origin.

    For an instance the org has left: aiohttp would keep them for its ``keepalive_timeout``,
    beside the new instance's (two pools of sockets and buffers at once after a move; see the
    soak in benchmarks/SOAK.md). aiohttp has no public way to close one host's connections, so
    this empties that origin's entries of the pool's private ``_conns`` (aiohttp 3.12 to 3.14,
    checked by tests at both ends); it does nothing if the pool has no such dict.
    """
    pool = getattr(connector, "_conns", None)
    if not isinstance(pool, dict):
        return
    host, port, is_ssl = url.raw_host, url.port, url.scheme in ("https", "wss")
    for key in [k for k in pool if (k.host, k.port, k.is_ssl) == (host, port, is_ssl)]:
        for protocol, _ in pool.pop(key):
            protocol.close()


def resolve(instance_url: str, path: str) -> tuple[str, bool]:
    """Turn a path (or a same-origin URL) into an absolute URL on the instance.

    Args:
        instance_url: The org's ``instance_url`` (no trailing ``/``).
        path: A path such as ``/services/data/`` (a missing leading ``/`` is added), or an
            absolute or ``//host`` URL on the instance's origin.

    Returns:
        ``(url, relative)``: ``relative`` is true when ``path`` was a path on the instance.

    Raises:
        CrossOriginError: ``path`` is an absolute or ``//host`` URL of another origin.
        ConfigurationError: ``path`` is not a string or not a valid URL.
    """
    if not isinstance(path, str):
        raise ConfigurationError(f"path must be a str such as '/services/data/'; got {path!r}")
    if path.startswith("/") and not path.startswith("//"):
        return instance_url + path, True
    try:
        target = URL(path)
    except (ValueError, TypeError):
        raise ConfigurationError(f"path {path[:200]!r} is not a valid URL or path") from None
    if target.scheme and not target.raw_host:
        raise ConfigurationError(f"path {path[:200]!r} has a scheme but no host")
    if not target.is_absolute() and not path.startswith("//"):
        return f"{instance_url}/{path}", True  # "services/data/..." without the leading "/"
    base = URL(instance_url)
    if path.startswith("//"):
        target = URL(f"{base.scheme}:{path}")
    origin = (target.scheme, target.raw_host, target.port)
    if not target.raw_host or origin != (base.scheme, base.raw_host, base.port):
        shown = (
            str(target.origin()) if target.raw_host and target.scheme else path.split("?")[0][:100]
        )
        raise CrossOriginError(
            f"refusing to send to {shown!r}: requests go only to the org's "
            f"instance_url {instance_url!r}; pass a path such as '/services/data/...'"
        )
    if target.raw_user is not None or target.raw_password is not None:
        raise ConfigurationError(
            "the URL carries credentials (user:password@); sfauth authenticates with the "
            "bearer token: pass a path such as '/services/data/...'"
        )
    # An absolute URL goes out as given; a "//host/..." one gets the instance's scheme.
    return (str(target) if path.startswith("//") else path), False
