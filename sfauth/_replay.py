"""The 401 replay: a rejected session is refreshed once for everyone; the request is resent."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from aiohttp import ClientResponse

from ._classify import is_rejection, rejection, session_error
from ._logging import logger
from ._scoping import closed_after_rejection
from ._token import Token
from .exceptions import InvalidSessionError, SessionClosedError

if TYPE_CHECKING:
    from ._refresh import TokenManager

__all__ = ["MAX_REFRESHES", "MAX_REPLAYS", "Resend", "after_rejection"]

#: Replays of one send attempt after 401s; the second only for a token that had worked (or was
#: taken unverified from a shared store).
MAX_REPLAYS = 2
#: Refreshes one request may cause, over all its attempts.
MAX_REFRESHES = 2


class Resend(Protocol):
    """A request the replay can send again.

    An ``Exchange`` (the middleware chain's), or a direct send's (``DirectResend``:
    ``SalesforceAuthMiddleware.send`` replays outside aiohttp's chain).
    """

    #: The logins this request caused so far (at most ``MAX_REFRESHES``).
    refreshes: int

    @property
    def manager(self) -> TokenManager:
        """The middleware's tokens."""

    @property
    def async_api(self) -> bool:
        """The request is to ``/services/async/`` (a rejection may be a 400 there)."""

    @property
    def method(self) -> str:
        """The request's method."""

    def where(self) -> str:
        """The request's URL as an error or a log event shows it (no query string)."""

    async def renewed(self, rejected: Token) -> Token:
        """``manager.replace(rejected, ...)`` within the request's limits (closed, timeout)."""

    def rewind_or_raise(self, status: int) -> None:
        """Put the body back for another send, or raise ``InvalidSessionError``."""

    def move(self, instance_url: str) -> None:
        """Point the request at ``instance_url`` (the org moved; the path stays)."""

    async def send(self, token: Token) -> tuple[ClientResponse, Token]:
        """Send again with ``token`` (or a newer one): the answer and the token it carried."""


async def after_rejection(
    exchange: Resend, response: ClientResponse, token: Token
) -> tuple[ClientResponse, Token]:
    """Handle a rejected session: refresh at most once for everyone, replay this request.

    A rejection is a 401 ``INVALID_SESSION_ID``, or on ``/services/async/`` a 400
    ``InvalidSessionId``. A rejection of a token that was already replaced (or is being
    replaced) replays with the newer token without another refresh; a rejection of the token
    in use starts (or joins) the single-flight refresh. A rejection of the replay is final,
    unless the token the replay carried had already worked for other requests: then the
    session was invalidated again in between (a second expiry or a revocation) and the request
    is replayed once more. Tokens that never worked are never replayed twice, and the circuit
    counts them; every login after a rejection is bounded by ``max_relogins``.

    Args:
        exchange: The request (it sends, rewinds the body, counts refreshes).
        response: The rejecting answer (a 401, or a 400 of the async API).
        token: The token that answer rejected.

    Returns:
        The answer to the replay (or ``response`` itself for an async-API 400 that is not
        about the session) and the token it carried.

    Raises:
        InvalidSessionError: Rejected again after a refresh and replay, ``max_relogins``
            reached, or a streamed body that cannot be sent again.
        RestApiNotAllowedError, SessionError: A 401 that a new token will not fix.
        SessionClosedError: The session was closed while the request waited for the new
            session (the message says it is safe to resend: Salesforce did nothing with it).
    """
    manager = exchange.manager
    method, url = exchange.method, exchange.where()
    found = await rejection(response, method, url)
    if found is None:  # a 400 of the async API that is not about the session
        if not manager.proven:
            manager.mark_proven(token)  # Salesforce answered past authentication
        return response, token
    error_code, message = found
    status = response.status
    del response  # read and released: a herd waits below by the thousand, none holding one
    for _ in range(MAX_REPLAYS):
        if token is manager.current:
            if exchange.refreshes >= MAX_REFRESHES:
                break  # this request already caused enough logins
            refusal = manager.reject(
                token,
                session_error(
                    InvalidSessionError,
                    method,
                    url,
                    error_code,
                    message,
                    "Salesforce rejected a token before it ever worked",
                ),
            )
            if refusal is not None:
                raise refusal
            exchange.refreshes += 1
        try:
            fresh = await exchange.renewed(token)
        except SessionClosedError:
            raise closed_after_rejection(method, url) from None
        exchange.rewind_or_raise(status)
        manager.telemetry.replay(status, error_code or "")
        if fresh.instance_url != token.instance_url:
            exchange.move(fresh.instance_url)
            url = exchange.where()
        logger.debug(
            "sfauth.request.replayed",
            method=method,
            url=url,
            status=status,
            error_code=error_code,
        )
        response, token = await exchange.send(fresh)
        found = None
        if is_rejection(response.status, exchange.async_api):
            url = exchange.where()  # the send moves it too if a newer token came meanwhile
            found = await rejection(response, method, url)
        if found is None:
            if not manager.proven and response.status < 500 and response.status != 429:
                manager.mark_proven(token)
            return response, token
        error_code, message = found
        status = response.status
        del response
        if token is not manager.last_proven and token is not manager.adopted:
            break  # a token that never worked: final
    error = session_error(
        InvalidSessionError,
        method,
        url,
        error_code,
        message,
        "Salesforce rejected the session even after a refresh and a replay",
    )
    manager.reject(token, error)
    raise error
