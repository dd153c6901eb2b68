"""The token-endpoint exchange: one HTTP POST, its timing, logging and error mapping.

RFC 7523 section 2.1 (JWT bearer grant) as used by Salesforce: ``POST {login_url}{site}/services/
oauth2/token`` with form fields ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` and
``assertion=<jwt>``; no client secret.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric import rsa
from yarl import URL

from ._assertion import AssertionSigner
from ._config import FlowConfig, is_loopback_host
from ._logging import logger, scrub
from ._retry import parse_retry_after
from ._token import Token, parse_token_response
from .exceptions import (
    SessionClosedError,
    TokenEndpointError,
    TokenResponseError,
    TransientTokenError,
)
from .signers._base import Signer

__all__ = ["GRANT_TYPE", "TokenClient"]

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"

#: A token response is about 1 KiB; anything past this is not one.
MAX_TOKEN_RESPONSE_BYTES = 256 * 1024

_ACCEPT = {"Accept": "application/json"}
#: Failures of TLS itself (an untrusted certificate, a handshake error): not transient.
_TLS_ERRORS = (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)


class TokenClient:
    """Mints an assertion and trades it for a ``Token``; one attempt per call.

    Args:
        config: Validated flow settings.
        private_key: The loaded RSA key, or a ``Signer``.
        assertion_lifetime: Seconds until each assertion's ``exp`` (``0 < x <= 180``).
        attempt_timeout: Seconds one POST may take, connection included.
    """

    __slots__ = ("_timeout", "config", "signer")

    def __init__(
        self,
        config: FlowConfig,
        private_key: rsa.RSAPrivateKey | Signer,
        *,
        assertion_lifetime: float,
        attempt_timeout: float,
    ) -> None:
        self.config = config
        self.signer = AssertionSigner(
            client_id=config.client_id,
            username=config.username,
            audience=config.audience,
            private_key=private_key,
            lifetime=assertion_lifetime,
        )
        self._timeout = aiohttp.ClientTimeout(total=attempt_timeout)

    def error(
        self, error: str, description: str, *, status: int | None, hint: str
    ) -> TransientTokenError:
        """Build a transient token error about this client's endpoint (no response body)."""
        return TransientTokenError(
            error,
            description,
            token_url=self.config.token_url,
            audience=self.config.audience,
            status=status,
            hint=hint,
        )

    async def assertion(self) -> str:
        """A fresh assertion (see ``AssertionSigner.assertion``).

        Raises:
            SignerError: A ``Signer`` failed (retryable when it said so).
        """
        return await self.signer.assertion()

    async def fetch(self, http: aiohttp.ClientSession, assertion: str | None = None) -> Token:
        """Perform one exchange with ``assertion``, or a freshly minted one.

        The POST goes through ``http``'s connection pool (its connector: TLS settings, proxy
        environment) but carries nothing else of ``http``: not its default headers (an
        ``Authorization`` or API key meant for another service never reaches the login host),
        not its ``raise_for_status``, cookies, base URL or middlewares. RFC 7523 section 2.1
        names the only two form fields the request needs.

        Args:
            http: The session whose connection pool carries the request.
            assertion: The assertion to send (from ``assertion()``); ``None`` mints one.

        Returns:
            The new token.

        Raises:
            SignerError: No assertion was given and the ``Signer`` failed.
            TokenEndpointError: A typed subclass for every refusal or failure; connection
                errors and timeouts become ``TransientTokenError``; a TLS failure (certificate
                verification, handshake) is permanent and not retried.
            SessionClosedError: ``http`` was closed before or during the request.
        """
        config = self.config
        log = logger.bind(token_url=config.token_url, audience=config.audience)
        if assertion is None:
            assertion = await self.signer.assertion()
        form = {"grant_type": GRANT_TYPE, "assertion": assertion}
        started = time.monotonic()
        log.debug("sfauth.token.requested")
        connector = http.connector
        if connector is None or http.closed:
            raise _closed()
        failure: TokenEndpointError | SessionClosedError | None = None
        try:
            # A session of its own, on the caller's pool: none of the caller's defaults.
            async with (
                aiohttp.ClientSession(
                    connector=connector,
                    connector_owner=False,
                    cookie_jar=aiohttp.DummyCookieJar(),
                    trust_env=http.trust_env,
                ) as own,
                own.post(
                    config.token_url,
                    data=form,
                    headers=_ACCEPT,
                    allow_redirects=False,
                    timeout=self._timeout,
                ) as resp,
            ):
                status = resp.status
                location = resp.headers.get("Location", "")
                retry_after = resp.headers.get("Retry-After")
                body = await _read_capped(resp)
        except RuntimeError:
            if not connector.closed:
                raise
            failure = _closed()
        except _TLS_ERRORS as exc:
            failure = self._failed(exc, log, started, retryable=False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            retryable = not connector.closed
            failure = self._failed(exc, log, started, retryable=True) if retryable else _closed()
        if failure is not None:
            raise failure  # outside the except block: no aiohttp error rides along
        duration = round(time.monotonic() - started, 3)
        try:
            if body is None:
                raise TokenResponseError(
                    "response_too_large",
                    f"the token endpoint sent more than {MAX_TOKEN_RESPONSE_BYTES} bytes",
                    token_url=config.token_url,
                    audience=config.audience,
                    status=status,
                    hint="Check that login_url points at a Salesforce login host.",
                )
            if 300 <= status < 400:
                raise TokenEndpointError(
                    f"http_{status}",
                    f"the token endpoint redirected to {location[:200]!r}",
                    token_url=config.token_url,
                    audience=config.audience,
                    status=status,
                    hint="Set login_url to the host that answers without a redirect "
                    "(often your My Domain URL); sfauth does not follow token redirects.",
                )
            token = parse_token_response(
                status,
                body,
                token_url=config.token_url,
                audience=config.audience,
                obtained_at=time.time(),
            )
            self.check_instance_url(token)
        except TokenEndpointError as exc:
            if exc.retryable:
                exc.retry_after = parse_retry_after(retry_after)
            log.warning(
                "sfauth.token.failed",
                error=exc.error,
                error_description=exc.error_description,
                status=status,
                duration=duration,
                retryable=exc.retryable,
            )
            raise
        log.info(
            "sfauth.token.obtained",
            status=status,
            duration=duration,
            instance_url=token.instance_url,
            org_id=token.org_id,
            user_id=token.user_id,
        )
        return token

    def _failed(
        self, exc: BaseException, log: Any, started: float, *, retryable: bool
    ) -> TokenEndpointError:
        """The typed error for a token request that got no HTTP answer."""
        duration = round(time.monotonic() - started, 3)
        reason = type(exc).__name__
        detail = scrub(str(exc))[:200] or "timed out"
        log.warning("sfauth.token.failed", error=reason, status=None, duration=duration)
        error: TokenEndpointError
        if retryable:
            error = self.error(
                "connection_error",
                f"{reason}: {detail}",
                status=None,
                hint="Check network access to login_url (retried per the RetryPolicy).",
            )
        else:
            error = TokenEndpointError(
                "tls_error",
                f"{reason}: {detail}",
                token_url=self.config.token_url,
                audience=self.config.audience,
                status=None,
                hint="TLS verification of the login host failed, which retrying cannot fix: "
                "pass ssl= an ssl.SSLContext that trusts the host's CA (e.g. "
                "ssl.create_default_context(cafile=...)), or point SSL_CERT_FILE at your CA "
                "bundle.",
            )
        # No connection (refused, DNS, TLS): this request cannot have been a login.
        error._no_connection = isinstance(exc, aiohttp.ClientConnectorError)  # type: ignore[attr-defined]
        return error

    def check_instance_url(self, token: Token) -> None:
        """Refuse a token whose ``instance_url`` is not https (loopback http when allowed).

        Raises:
            TokenResponseError: The instance URL would send the bearer in clear.
        """
        url = URL(token.instance_url)
        if url.scheme == "https" or (
            url.scheme == "http" and self.config.allow_http_loopback and is_loopback_host(url.host)
        ):
            return
        raise TokenResponseError(
            "insecure_instance_url",
            f"instance_url {token.instance_url!r} is not https",
            token_url=self.config.token_url,
            audience=self.config.audience,
            status=200,
            hint="sfauth only sends a bearer token over https "
            "(http is allowed for loopback hosts with allow_http_loopback=True).",
        )


def _closed() -> SessionClosedError:
    return SessionClosedError("the HTTP session was closed while a token request was being sent")


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes | None:
    """Read at most ``MAX_TOKEN_RESPONSE_BYTES``; ``None`` when the body is larger."""
    declared = resp.content_length
    if declared is not None and declared > MAX_TOKEN_RESPONSE_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_TOKEN_RESPONSE_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
