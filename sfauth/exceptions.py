"""Every error sfauth raises, in one tree.

::

    SFAuthError
    ├── ConfigurationError (also ValueError)      bad settings, caught before any I/O
    │   └── PrivateKeyError                        the private key cannot be used
    ├── CrossOriginError (also ValueError)         a request would leave the instance origin
    ├── TokenEndpointError                         the token endpoint did not give a token
    │   ├── InvalidGrantError                      invalid_grant (user, aud, signature, exp)
    │   │   └── LoginRateExceededError             "login rate exceeded" (3,600 logins/user/hour)
    │   ├── InvalidClientError                     invalid_client_id, app_not_found, ...
    │   ├── UnsupportedGrantTypeError              unsupported_grant_type (malformed body)
    │   ├── TransientTokenError                    unknown_error, 5xx, non-JSON, connection failure
    │   └── TokenResponseError                     a 200 whose body is not a usable token
    ├── CircuitOpenError                           refreshes keep failing: no login for a while
    ├── SessionClosedError                         the session was closed mid-request
    ├── TokenStoreError                            the shared token store is unreachable
    ├── ApiBudgetError                             the API budget guard refused a request, unsent
    ├── APIError                                   the REST API answered with an error
    │   ├── MalformedRequestError                  400: a bad field, value, id or query
    │   ├── MultipleRecordsError                   300: an upsert's external id matched several
    │   ├── ForbiddenError                         403 other than the quota: no access
    │   ├── NotFoundError                          404: no such record, object or resource
    │   │   └── APIVersionError                    the pinned api_version is not served
    │   ├── SessionError                           HTTP 401
    │   │   ├── InvalidSessionError                401 that a refresh did not fix
    │   │   └── RestApiNotAllowedError             session valid, but not for the REST API
    │   ├── RequestLimitError                      403 TotalRequests: the daily quota is spent
    │   └── TransientAPIError                      5xx/429/concurrent limit, retries exhausted
    └── TransportError                             no answer: connection failed or timed out
        └── RequestTimeoutError (also TimeoutError)   the request's total timeout ran out

Errors from the token endpoint carry the structured fields Salesforce sent (``error``,
``error_description``), the ``token_url`` and ``audience`` that were used, the HTTP ``status``
and a one-line ``hint``. No exception ever carries an access token, an assertion, a private key
or request headers.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "APIVersionError",
    "ApiBudgetError",
    "CircuitOpenError",
    "ConfigurationError",
    "CrossOriginError",
    "ForbiddenError",
    "InvalidClientError",
    "InvalidGrantError",
    "InvalidSessionError",
    "LoginRateExceededError",
    "MalformedRequestError",
    "MultipleRecordsError",
    "NotFoundError",
    "PrivateKeyError",
    "RequestLimitError",
    "RequestTimeoutError",
    "RestApiNotAllowedError",
    "SFAuthError",
    "SessionClosedError",
    "SessionError",
    "SignerError",
    "TokenEndpointError",
    "TokenResponseError",
    "TokenStoreError",
    "TransientAPIError",
    "TransientTokenError",
    "TransportError",
    "UnsupportedGrantTypeError",
]


class SFAuthError(Exception):
    """Base class of every error raised by sfauth."""


class ConfigurationError(SFAuthError, ValueError):
    """A setting passed to sfauth is missing or malformed.

    Raised before any network I/O; the message names the setting and how to fix it.
    """


class PrivateKeyError(ConfigurationError):
    """The private key cannot be loaded or is not usable for RS256.

    Salesforce verifies JWT bearer assertions with the X.509 certificate uploaded to the
    connected app, so the key must be an RSA private key of at least 2048 bits.
    """


class SignerError(SFAuthError):
    """A ``Signer`` (``sfauth.signers``) could not sign an assertion.

    Args:
        message: What failed; never key material.
        retryable: A transient failure (a busy device, a throttled KMS): the token request's
            retry policy tries again. ``False``: permanent (a wrong PIN, a missing key).
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class CrossOriginError(SFAuthError, ValueError):
    """A request URL points outside the org's ``instance_url`` origin.

    sfauth refuses such requests before sending so the bearer token cannot reach another host.
    """


class TokenEndpointError(SFAuthError):
    """The token endpoint (``{login_url}{site}/services/oauth2/token``) did not issue a token.

    Attributes:
        error: Salesforce's ``error`` code (for example ``"invalid_grant"``), or a short
            sfauth code such as ``"http_503"`` / ``"connection_error"`` when the server sent none.
        error_description: Salesforce's ``error_description`` (or a short description).
        token_url: The URL that was posted to.
        audience: The ``aud`` claim that was sent.
        status: The HTTP status, or ``None`` when no response arrived.
        hint: One line telling the user what to check.
        retryable: Whether sending a fresh assertion later may succeed.
        retry_after: Seconds the server asked to wait (``Retry-After``), or ``None``.
        sent: ``False`` when sfauth refused before sending anything: a refusal another
            process recorded in the shared store (``refusal_cooldown``), the login-rate
            back-off (``login_backoff``) or cap (``login_rate_cap``).
        retry_in: For a refusal that was not sent: seconds until a login may be tried again,
            when known; else ``None``.
    """

    retryable: bool = False
    retry_after: float | None = None
    sent: bool = True
    retry_in: float | None = None

    def __init__(
        self,
        error: str,
        error_description: str,
        *,
        token_url: str,
        audience: str,
        status: int | None,
        hint: str,
    ) -> None:
        self.error = error
        self.error_description = error_description
        self.token_url = token_url
        self.audience = audience
        self.status = status
        self.hint = hint
        super().__init__(self._message())

    def _message(self) -> str:
        status = f"HTTP {self.status}" if self.status is not None else "no response"
        return (
            f"{self.error}: {self.error_description} "
            f"({status} from POST {self.token_url}, aud={self.audience}). {self.hint}"
        )


class InvalidGrantError(TokenEndpointError):
    """``invalid_grant``: the assertion or the user was refused (RFC 7523 section 3.1).

    Covers an unapproved user, a wrong audience, a bad signature, an expired ``exp``
    (often clock skew), an inactive user. Never retried: a new assertion gets the same answer.
    """


class LoginRateExceededError(InvalidGrantError):
    """``invalid_grant`` "login rate exceeded": the user logged in too often.

    Salesforce allows 3,600 logins per user per hour and then refuses them (Knowledge article
    000381578, "Sign In Error 'Login Rate Exceeded'"); each JWT bearer exchange is a login.
    sfauth then stops logging in for ``login_backoff`` seconds, fleet-wide with a shared
    store. Also raised, with ``sent=False``, during that back-off and when ``login_rate_cap``
    logins of the user were counted in the last hour.
    """


class InvalidClientError(TokenEndpointError):
    """The connected app is unknown or not usable by this user.

    ``invalid_client_id`` (wrong consumer key or app not in this org), ``invalid_client``,
    ``app_not_found`` or ``invalid_app_access`` (external client app not installed or not
    approved for the user).
    """


class UnsupportedGrantTypeError(TokenEndpointError):
    """``unsupported_grant_type``: the form body did not carry the JWT bearer grant type."""


class TransientTokenError(TokenEndpointError):
    """A failure on Salesforce's side or on the way there; trying again later may succeed.

    ``unknown_error`` / ``retry your request``, HTTP 5xx, a maintenance HTML page, a dropped
    connection or a timeout.
    """

    retryable = True


class TokenResponseError(TokenEndpointError):
    """The token endpoint answered 200 but the body is not a usable token response.

    For example: not JSON, ``access_token`` or ``instance_url`` missing, ``token_type`` other
    than ``Bearer``, or an ``id`` that is not ``.../id/{org_id}/{user_id}``. A body that is not
    JSON at all (cut short, a proxy's page) is ``retryable``; a JSON body missing fields is not.
    """


class CircuitOpenError(SFAuthError):
    """Token refreshes keep failing, so sfauth stopped logging in for a cooldown.

    After ``failure_threshold`` consecutive refreshes that failed, or whose new token the API
    rejected before it ever worked, every caller that needs a new token fails fast with this
    error until the cooldown ends; then one caller may try again. This keeps a broken
    configuration from turning into a login storm (Salesforce limits logins per user per hour).

    Attributes:
        failures: Consecutive failed or rejected refreshes.
        retry_in: Seconds until a refresh may be tried again.
        last_error: The error of the last failed refresh, if one is known.
    """

    def __init__(self, failures: int, retry_in: float, last_error: BaseException | None) -> None:
        self.failures = failures
        self.retry_in = retry_in
        self.last_error = last_error
        last = f" Last failure: {type(last_error).__name__}: {last_error}" if last_error else ""
        super().__init__(
            f"not logging in again for {retry_in:.1f} s after {failures} consecutive failed or "
            f"rejected token refreshes (see refresh_cooldown).{last}"
        )


class SessionClosedError(SFAuthError):
    """The session was closed while a request or a token refresh still needed it.

    Raised instead of aiohttp's internal errors when ``AuthSession.close()`` (or the
    ``aiohttp.ClientSession`` carrying the middleware) closes mid-request.
    """


class TokenStoreError(SFAuthError):
    """The shared ``TokenStore`` (Redis) cannot be used: unreachable, or its value unreadable.

    Raised to refresh callers only when the store is configured not to fall back to minting
    locally (``RedisTokenStore(on_unavailable="raise")``).
    """


class ApiBudgetError(SFAuthError):
    """The daily API budget guard refused a low-priority request before sending it.

    Raised for requests sent with ``low_priority=True`` once the org's API usage, as last
    reported by ``Sforce-Limit-Info`` to any process of the fleet, reaches ``api_budget`` of
    the daily allowance.

    Attributes:
        used: Requests counted in the org's 24-hour window.
        limit: The org's 24-hour allowance.
        budget: The fraction of ``limit`` low-priority requests may use.
        sent: Always ``False``: nothing of the request was sent.
    """

    sent = False

    def __init__(self, used: int, limit: int, budget: float) -> None:
        self.used = used
        self.limit = limit
        self.budget = budget
        share = used / limit if limit else 1.0
        super().__init__(
            f"low-priority request not sent: the org has used {used} of its {limit} daily API "
            f"requests ({share:.1%}), past api_budget={budget:g}; send it again once the "
            "usage Salesforce reports is below that (the 24-hour window rolls), or without "
            "low_priority=True"
        )


class APIError(SFAuthError):
    """The REST API answered with an error that sfauth acted on.

    Attributes:
        status: The HTTP status.
        error_code: Salesforce's ``errorCode`` (e.g. ``"INVALID_SESSION_ID"``), or ``None``.
        message: Salesforce's ``message``, or a short description of the body.
        method: The HTTP method of the request.
        url: The request URL without its query string.
        attempts: How many times the request was sent.
        fields: The ``fields`` of Salesforce's first error (``[]`` when it names none).
        errors: Every error of the body as ``{"errorCode", "message", "fields"}`` dicts, in
            Salesforce's order (``[]`` when the body had none).
    """

    retryable: bool = False

    def __init__(
        self,
        description: str,
        *,
        status: int,
        error_code: str | None,
        message: str,
        method: str,
        url: str,
        attempts: int = 1,
        fields: list[str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        self.status = status
        self.error_code = error_code
        self.message = message
        self.method = method
        self.url = url
        self.attempts = attempts
        self.fields = fields or []
        self.errors = errors or []
        self.description = description
        super().__init__(description)

    def __str__(self) -> str:
        tries = f", {self.attempts} attempts" if self.attempts > 1 else ""
        return (
            f"{self.description} ({self.method} {self.url} -> HTTP {self.status}"
            f"{' ' + self.error_code if self.error_code else ''}: {self.message}{tries})"
        )


class MalformedRequestError(APIError):
    """400: Salesforce refused the request as sent (a bad field, value, id or query).

    ``error_code`` says which (``INVALID_FIELD``, ``REQUIRED_FIELD_MISSING``,
    ``MALFORMED_QUERY``, …), ``fields`` which fields ("Status Codes and Error Responses", REST
    API Developer Guide). Sending the same request again gives the same answer.
    """


class ForbiddenError(APIError):
    """403 other than the API quota: the user lacks access (``INSUFFICIENT_ACCESS``, …)."""


class NotFoundError(APIError):
    """404: the record, object or resource does not exist.

    ``error_code`` is ``NOT_FOUND``, or ``ENTITY_IS_DELETED`` for a record in the recycle bin;
    an upsert by a field that is not an external id is a 404 too.
    """


class APIVersionError(NotFoundError):
    """The pinned ``api_version`` is not one the org serves (its endpoints answer 404).

    Attributes:
        version: The pinned version, e.g. ``"99.0"``.
        served: The versions the org serves, highest last.
    """

    def __init__(self, description: str, *, version: str, served: list[str], **kw: Any) -> None:
        self.version = version
        self.served = served
        super().__init__(description, **kw)


class MultipleRecordsError(APIError):
    """300: an upsert's external id matched several records, so nothing was written.

    Attributes:
        urls: The REST URLs of the matching records, as Salesforce listed them.
    """

    def __init__(self, description: str, *, urls: list[str], **kw: Any) -> None:
        self.urls = urls
        super().__init__(description, **kw)


class SessionError(APIError):
    """The REST API refused the session with HTTP 401."""


class InvalidSessionError(SessionError):
    """401 ``INVALID_SESSION_ID`` that a fresh token did not fix.

    Raised when a request was already replayed once with a new token, or when the refresh
    cooldown refuses another login because recent fresh tokens were rejected too.
    """


class RestApiNotAllowedError(SessionError):
    """401 "This session is not valid for use with the REST API".

    A new token does not fix this: the connected app lacks the ``api`` OAuth scope, or the
    org's session security level policy blocks API access for this session.
    """


class RequestLimitError(APIError):
    """The org's 24-hour API request quota is spent (403 ``TotalRequests Limit exceeded``).

    ``REQUEST_LIMIT_EXCEEDED`` naming ``TotalRequests`` is not retried: requests fail until the
    rolling window frees capacity or Salesforce raises the limit (Setup > Company Information >
    API Requests).
    """


class TransientAPIError(APIError):
    """A transient answer persisted through every retry the ``RetryPolicy`` allowed.

    Transient: 502/503/504, a transient 500, 429, or 403 ``REQUEST_LIMIT_EXCEEDED`` naming
    ``ConcurrentRequests`` or ``ConcurrentPerOrgLongTxn`` (the concurrent long-running request
    limit).

    Attributes:
        retry_after: Seconds the server last asked to wait (``Retry-After``), or ``None``.
    """

    retryable = True
    retry_after: float | None = None


class TransportError(SFAuthError):
    """No HTTP answer: the connection failed, was reset, or timed out.

    Wraps the aiohttp or OS error without its request headers. Retried like a transient
    answer when that is safe (always when the request provably was not sent; otherwise only
    for idempotent methods or when the caller opted in).

    Attributes:
        method: The HTTP method.
        url: The request URL without its query string.
        reason: The underlying error's type name (e.g. ``"ServerDisconnectedError"``).
        attempts: How many times the request was sent or tried.
        sent: ``False`` when the request provably never reached the server.
    """

    retryable = True
    retry_after: float | None = None

    def __init__(
        self,
        description: str,
        *,
        method: str,
        url: str,
        reason: str,
        sent: bool,
        attempts: int = 1,
    ) -> None:
        self.method = method
        self.url = url
        self.reason = reason
        self.sent = sent
        self.attempts = attempts
        self.description = description
        super().__init__(description)

    def __str__(self) -> str:
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        return f"{self.method} {self.url} failed{tries}: {self.reason}: {self.description}"


class RequestTimeoutError(TransportError, TimeoutError):
    """The request's total timeout (``aiohttp.ClientTimeout.total``) ran out.

    Also a ``TimeoutError``, so ``except TimeoutError`` keeps working.
    """
