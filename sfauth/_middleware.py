"""The aiohttp client middleware: bearer injection scoped to the instance, and the 401 replay.

Shape from aiohttp's ``DigestAuthMiddleware`` (client middlewares, aiohttp 3.12+): an async
callable ``(request, handler) -> response`` that resends at most once. ``AuthSession``
installs it on its own ``ClientSession``; your ``ClientSession`` can use the same object.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse, hdrs
from yarl import URL

from ._assertion import MAX_ASSERTION_LIFETIME
from ._config import DEFAULT_LOGIN_URL, FlowConfig
from ._keys import PrivateKeyInput, load_private_key
from ._logging import logger
from ._oauth import TokenClient
from ._refresh import TokenManager
from ._token import Token
from .exceptions import InvalidSessionError, RestApiNotAllowedError, SFAuthError

__all__ = ["SalesforceAuthMiddleware"]

_NOT_FOR_REST = "not valid for use with the rest api"


class SalesforceAuthMiddleware:
    """aiohttp client middleware that authenticates requests with the JWT bearer flow.

    It adds ``Authorization: Bearer <access_token>`` to requests whose origin is the current
    ``instance_url`` origin (never to another host, also on every redirect hop), fetches the
    first token on demand, and on a 401 ``INVALID_SESSION_ID`` refreshes once for all
    concurrent callers (single-flight) and replays the request once. A request addressed to an
    instance origin the org has since left (``instance_url`` changed at a refresh) is sent to
    the new origin.

    Use it directly with your own session::

        auth = SalesforceAuthMiddleware(client_id=..., username=..., private_key="key.pem")
        async with aiohttp.ClientSession(middlewares=(auth,)) as http:
            token = await auth.token(http)
            async with http.get(f"{token.instance_url}/services/data/v62.0/limits") as r:
                ...

    Args:
        client_id: The connected app's consumer key (the assertion's ``iss``).
        username: The Salesforce username to act as (``sub``).
        private_key: RSA private key: PEM text (``str``/``bytes``), a file path, or a loaded
            ``RSAPrivateKey``. Parsed once, here.
        passphrase: Passphrase of an encrypted PEM.
        login_url: Scheme and host of the token endpoint; default
            ``https://login.salesforce.com``. Use ``https://test.salesforce.com`` for sandboxes
            or your My Domain URL.
        audience: The ``aud`` claim; derived from ``login_url`` and ``site`` when ``None``.
        site: Experience Cloud site path prefix (``"/customers"``), default ``""``.
        assertion_lifetime: Seconds until each assertion's ``exp``; ``0 < x <= 180``.
        allow_http_loopback: Allow plain ``http`` to loopback hosts (emulators, tests).
        refresh_timeout: Seconds one refresh may take in total (default 30).
        refresh_cooldown: Seconds before a token that was rejected by the API without ever
            working may be replaced again (default 60); bounds logins when every fresh token
            is refused.

    Raises:
        ConfigurationError: A setting is missing or malformed.
        PrivateKeyError: The key cannot be loaded, is not RSA, or is shorter than 2048 bits.

    """

    def __init__(
        self,
        *,
        client_id: str,
        username: str,
        private_key: PrivateKeyInput,
        passphrase: str | bytes | None = None,
        login_url: str = DEFAULT_LOGIN_URL,
        audience: str | None = None,
        site: str = "",
        assertion_lifetime: float = MAX_ASSERTION_LIFETIME,
        allow_http_loopback: bool = False,
        refresh_timeout: float = 30.0,
        refresh_cooldown: float = 60.0,
    ) -> None:
        config = FlowConfig.create(
            client_id=client_id,
            username=username,
            login_url=login_url,
            audience=audience,
            site=site,
            allow_http_loopback=allow_http_loopback,
        )
        key = load_private_key(private_key, passphrase)
        client = TokenClient(
            config,
            key,
            assertion_lifetime=assertion_lifetime,
            attempt_timeout=refresh_timeout,
        )
        self._manager = TokenManager(
            client, refresh_timeout=refresh_timeout, refresh_cooldown=refresh_cooldown
        )
        self.config = config

    def __repr__(self) -> str:
        c = self.config
        return (
            f"SalesforceAuthMiddleware(client_id={c.client_id!r}, username={c.username!r}, "
            f"token_url={c.token_url!r}, audience={c.audience!r})"
        )

    @property
    def token_requests(self) -> int:
        """How many token exchanges this object has started (each a POST to the token URL)."""
        return self._manager.token_requests

    @property
    def current_token(self) -> Token | None:
        """The token in use, or ``None`` before the first exchange or while it is replaced."""
        return self._manager.current

    async def token(self, http: aiohttp.ClientSession) -> Token:
        """Return the current token, fetching one if there is none yet.

        Args:
            http: A session to send the token request through (this middleware is bypassed
                for that request).

        Returns:
            The current ``Token``.

        Raises:
            TokenEndpointError: The exchange failed; the subclass says why.

        """
        token = self._manager.current
        if token is not None:
            return token
        return await self._manager.get(http)

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        """Authenticate one request hop (aiohttp client middleware protocol).

        Args:
            request: The request aiohttp is about to send (called again on each redirect).
            handler: The next handler in the chain.

        Returns:
            The response. A 401 is never returned for a request that carried the bearer.

        Raises:
            InvalidSessionError: 401 ``INVALID_SESSION_ID`` even after one refresh and replay,
                or a refresh is refused by the cooldown.
            RestApiNotAllowedError: 401 "This session is not valid for use with the REST API".
            TokenEndpointError: The token could not be obtained.

        """
        manager = self._manager
        token = manager.current
        if token is None:
            token = await manager.get(request.session)
        url = request.url
        key = (url.scheme, url.raw_host or "", url.port)
        if key != manager.origin:
            if key not in manager.old_origins:
                return await handler(request)  # not Salesforce's instance: no bearer
            _rebind(request, token.instance_url)
        request.headers[hdrs.AUTHORIZATION] = "Bearer " + token.access_token
        response = await handler(request)
        if response.status != 401:
            if not manager.proven:
                manager.mark_proven(token)
            return response

        error_code, message = await _read_401(response)
        if _NOT_FOR_REST in message.lower():
            raise _session_error(RestApiNotAllowedError, request, error_code, message)
        if not manager.reject(token):
            raise _session_error(
                InvalidSessionError,
                request,
                error_code,
                message,
                "Salesforce rejected the freshly issued tokens; not logging in again before "
                "refresh_cooldown ends (check the connected app's scopes and the user's session "
                "policies)",
            )
        fresh = await manager.replace(token, request.session)
        if fresh.instance_url != token.instance_url:
            _rebind(request, fresh.instance_url)
        request.headers[hdrs.AUTHORIZATION] = "Bearer " + fresh.access_token
        logger.debug(
            "sfauth.request.replayed",
            method=request.method,
            url=str(request.url.with_query(None)),
            status=401,
            error_code=error_code,
        )
        replay = await handler(request)
        if replay.status != 401:
            if not manager.proven:
                manager.mark_proven(fresh)
            return replay
        error_code, message = await _read_401(replay)
        if _NOT_FOR_REST in message.lower():
            raise _session_error(RestApiNotAllowedError, request, error_code, message)
        manager.reject(fresh)
        raise _session_error(
            InvalidSessionError,
            request,
            error_code,
            message,
            "Salesforce rejected the session even after a refresh and one replay",
        )


def _rebind(request: ClientRequest, instance_url: str) -> None:
    """Point ``request`` at ``instance_url``'s origin, keeping its path and query."""
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


async def _read_401(response: ClientResponse) -> tuple[str | None, str]:
    """Read a 401 body (Salesforce sends ``[{"message", "errorCode"}]``) and release it."""
    try:
        body = await response.read()
    except (aiohttp.ClientError, TimeoutError):
        body = b""
    finally:
        response.release()
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):
        return None, "(401 without a JSON body)"
    if isinstance(data, dict):
        data = [data]
    if isinstance(data, list) and data and isinstance(data[0], dict):
        first = data[0]
        code = first.get("errorCode")
        message = first.get("message")
        return (
            code if isinstance(code, str) else None,
            message[:300] if isinstance(message, str) else "(no message)",
        )
    return None, "(401 with an unexpected JSON body)"


def _session_error(
    cls: type[InvalidSessionError] | type[RestApiNotAllowedError],
    request: ClientRequest,
    error_code: str | None,
    message: str,
    description: str | None = None,
) -> SFAuthError:
    if description is None:
        description = (
            "the session is not valid for the REST API; a new token will not help: give the "
            "connected app the 'api' OAuth scope and check the session security level policy"
        )
    return cls(
        description,
        status=401,
        error_code=error_code,
        message=message,
        method=request.method,
        url=str(request.url.with_query(None)),
    )
