"""The token model and the pure parsing/classification of token-endpoint responses.

Response contract: Salesforce "OAuth 2.0 JWT Bearer Flow for Server-to-Server Integration" and
the Salesforce Platform APIs Postman collection ("JWT Bearer Token Flow"). A success is a JSON
object with ``access_token``, ``scope``, ``instance_url``, ``id`` and ``token_type``, possibly
``issued_at`` (epoch milliseconds as a string), ``signature``, ``sfdc_community_url`` and
``sfdc_community_id``; there is no ``refresh_token`` and no ``expires_in``. An error is a 400
JSON object ``{"error", "error_description"}`` (RFC 6749 section 5.2).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ._bodies import MESSAGE_LIMIT, clip
from ._logging import scrub
from .exceptions import (
    InvalidClientError,
    InvalidGrantError,
    LoginRateExceededError,
    TokenEndpointError,
    TokenResponseError,
    TransientTokenError,
    UnsupportedGrantTypeError,
)

__all__ = ["Token", "classify_token_error", "parse_token_response", "token_error"]

_SNIPPET = 120


@dataclass(frozen=True, slots=True, kw_only=True)
class Token:
    """An access token issued by the JWT bearer flow, with what came with it.

    The ``repr`` never shows ``access_token``. Treat the object as a credential.

    Attributes:
        access_token: The session id to send as ``Authorization: Bearer …``.
        instance_url: Base URL of the org's instance (``https://acme.my.salesforce.com``),
            without a trailing slash; REST paths are relative to it.
        id: Identity URL ``https://login.salesforce.com/id/{org_id}/{user_id}``.
        org_id: The organization id (``00D…``), second-to-last path segment of ``id``.
        user_id: The user id (``005…``), last path segment of ``id``.
        scope: Space-separated scopes granted (``"web openid api full"``), or ``""``.
        token_type: Always ``"Bearer"``.
        issued_at: When Salesforce issued the token, epoch **milliseconds**, if it said.
        obtained_at: When sfauth received the token, epoch seconds (``time.time()``).
        sfdc_community_url: Experience Cloud site URL, for tokens minted through a site.
        sfdc_community_id: Experience Cloud site id, for tokens minted through a site.
    """

    access_token: str = field(repr=False)
    instance_url: str
    id: str
    org_id: str
    user_id: str
    scope: str
    token_type: str
    issued_at: int | None
    obtained_at: float
    sfdc_community_url: str | None = None
    sfdc_community_id: str | None = None

    def __repr__(self) -> str:
        return (
            f"Token(access_token=<redacted>, instance_url={self.instance_url!r}, "
            f"org_id={self.org_id!r}, user_id={self.user_id!r}, scope={self.scope!r}, "
            f"issued_at={self.issued_at!r}, obtained_at={self.obtained_at!r})"
        )

    __str__ = __repr__

    def as_dict(self, *, show_token: bool = False) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict, like the token endpoint's response.

        Args:
            show_token: Include ``access_token`` in clear. When false (the default) it is
                replaced with a mask that keeps only the org-id prefix.

        Returns:
            ``access_token``, ``instance_url``, ``id``, ``org_id``, ``user_id``, ``scope``,
            ``token_type`` and, when known, ``issued_at`` (ms, as a string like Salesforce
            sends it) and the community fields.
        """
        out: dict[str, Any] = {
            "access_token": self.access_token if show_token else mask_token(self.access_token),
            "scope": self.scope,
            "instance_url": self.instance_url,
            "id": self.id,
            "token_type": self.token_type,
        }
        if self.issued_at is not None:
            out["issued_at"] = str(self.issued_at)
        if self.sfdc_community_url is not None:
            out["sfdc_community_url"] = self.sfdc_community_url
        if self.sfdc_community_id is not None:
            out["sfdc_community_id"] = self.sfdc_community_id
        out["org_id"] = self.org_id
        out["user_id"] = self.user_id
        return out


def mask_token(access_token: str) -> str:
    """Mask a session id, keeping only the part before ``!`` (the org id, not a secret)."""
    head, sep, _ = access_token.partition("!")
    return f"{head}!****" if sep else "****"


def parse_token_response(
    status: int,
    body: bytes,
    *,
    token_url: str,
    audience: str,
    obtained_at: float,
) -> Token:
    """Turn a token-endpoint response into a ``Token`` or a typed error.

    Args:
        status: HTTP status code.
        body: The raw response body.
        token_url: The URL that was posted to (for error messages).
        audience: The ``aud`` that was sent (for error messages).
        obtained_at: Epoch seconds at which the response arrived.

    Returns:
        The token, when ``status`` is 200 and the body is a valid token response.

    Raises:
        TokenEndpointError: A subclass chosen by ``classify_token_error`` for error
            responses, or ``TokenResponseError`` for a 200 whose body is unusable.
    """
    if status != 200:
        raise classify_token_error(status, body, token_url=token_url, audience=audience)

    def bad(what: str) -> TokenResponseError:
        return TokenResponseError(
            "invalid_token_response",
            what,
            token_url=token_url,
            audience=audience,
            status=status,
            hint="The token endpoint answered 200 with an unexpected body; check that "
            "login_url points at a Salesforce login host and no proxy rewrites the response.",
        )

    data = _json_object(body)
    if data is None:
        # No snippet here: a truncated success body may hold the access token. A 200 that is
        # not JSON (cut short, or a proxy's page) is transient: a new exchange may succeed.
        error = bad(f"the body ({len(body)} bytes) is not a JSON object")
        error.retryable = True
        raise error
    access_token = data.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise bad("access_token is missing or not a non-empty string")
    if not _TOKEN_CHARS.fullmatch(access_token):
        raise bad("access_token has characters a session id never has (spaces or controls)")
    instance_url = data.get("instance_url")
    if not isinstance(instance_url, str) or not instance_url:
        raise bad("instance_url is missing or not a non-empty string")
    problem = _instance_url_problem(instance_url)
    if problem:
        raise bad(f"instance_url {scrub(instance_url[:_SNIPPET])!r} {problem}")
    token_type = data.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise bad(f"token_type is {str(token_type)[:40]!r}, expected 'Bearer'")
    identity = data.get("id")
    if not isinstance(identity, str):
        raise bad("id (the identity URL) is missing or not a string")
    segments = urlsplit(identity).path.rstrip("/").split("/")
    if len(segments) < 3 or segments[-3] != "id" or not segments[-2] or not segments[-1]:
        raise bad(
            f"id {identity[:_SNIPPET]!r} is not an identity URL .../id/{{org_id}}/{{user_id}}"
        )
    scope = data.get("scope", "")
    if not isinstance(scope, str):
        raise bad("scope is not a string")
    issued_raw = data.get("issued_at")
    issued_at: int | None = None
    if issued_raw is not None:
        text = str(issued_raw) if isinstance(issued_raw, str | int) else ""
        if not _DIGITS.fullmatch(text):
            raise bad("issued_at is not epoch milliseconds")
        issued_at = int(text)
    community_url = data.get("sfdc_community_url")
    community_id = data.get("sfdc_community_id")
    return Token(
        access_token=access_token,
        instance_url=instance_url.rstrip("/"),
        id=identity,
        org_id=segments[-2],
        user_id=segments[-1],
        scope=scope,
        token_type="Bearer",
        issued_at=issued_at,
        obtained_at=obtained_at,
        sfdc_community_url=community_url if isinstance(community_url, str) else None,
        sfdc_community_id=community_id if isinstance(community_id, str) else None,
    )


_TOKEN_CHARS = re.compile(r"[\x21-\x7e]{1,4096}")
_DIGITS = re.compile(r"[0-9]{1,18}")


def _instance_url_problem(url: str) -> str:
    """Why ``url`` is not a plain ``scheme://host[:port]`` base URL, or ``""`` when it is."""
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "contains whitespace or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "is not an absolute http(s) URL"
    if parts.username is not None or parts.password is not None:
        return "carries credentials"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "is not a base URL (it has a path, query or fragment)"
    return ""


# (error, description) → hint; description None matches any description of that error.
_HINTS: dict[tuple[str, str | None], str] = {
    ("invalid_grant", "user hasn't approved this consumer"): (
        "Pre-authorize the user's profile or permission set in the connected app "
        "(Permitted Users: Admin approved users are pre-authorized), and check that "
        "username belongs to this org."
    ),
    ("invalid_grant", "audience is invalid"): (
        "Set audience to https://login.salesforce.com for production, "
        "https://test.salesforce.com for a sandbox, or the site URL for Experience Cloud."
    ),
    ("invalid_grant", "invalid assertion"): (
        "The signature does not match the certificate uploaded to the connected app: "
        "check that private_key pairs with that certificate and client_id is its consumer key."
    ),
    ("invalid_grant", "expired authorization code"): (
        "The assertion's exp is already in the past for Salesforce: check this machine's "
        "clock (NTP) - exp is computed from time.time()."
    ),
    ("invalid_grant", "inactive user"): (
        "The user is deactivated or frozen; activate it or use another integration user."
    ),
    ("invalid_grant", "authentication failure"): (
        "Salesforce refused the login; check the user's login IP ranges and hours, and the "
        "connected app's policies."
    ),
    ("invalid_grant", "login rate exceeded"): (
        "The user logged in more than 3,600 times in an hour (Salesforce Knowledge 000381578): "
        "share one token between processes (token_store=RedisTokenStore(...)); sfauth does "
        "not log in again for login_backoff seconds."
    ),
    ("invalid_grant", None): (
        "Salesforce refused the assertion; check client_id, username, audience and that "
        "the key pairs with the connected app's certificate."
    ),
    ("invalid_client_id", None): (
        "client_id is not the consumer key of a connected app in this org; copy it from "
        "the app's OAuth settings (and wait a few minutes after creating the app)."
    ),
    ("invalid_client", None): (
        "client_id is not the consumer key of a connected app in this org; copy it from "
        "the app's OAuth settings."
    ),
    ("app_not_found", None): (
        "The external client app is not installed in this org; install or deploy it."
    ),
    ("invalid_app_access", None): (
        "The user is not approved for this app; add the user's profile or permission set "
        "to the app's policies."
    ),
    ("unsupported_grant_type", None): (
        "The request body was malformed; it must be form-encoded with grant_type="
        "urn:ietf:params:oauth:grant-type:jwt-bearer."
    ),
    ("unknown_error", None): "A transient error on Salesforce's side; try again.",
}

_CLASSES: dict[str, type[TokenEndpointError]] = {
    "invalid_grant": InvalidGrantError,
    "invalid_client_id": InvalidClientError,
    "invalid_client": InvalidClientError,
    "app_not_found": InvalidClientError,
    "invalid_app_access": InvalidClientError,
    "unsupported_grant_type": UnsupportedGrantTypeError,
    "unknown_error": TransientTokenError,
}


def classify_token_error(
    status: int, body: bytes, *, token_url: str, audience: str
) -> TokenEndpointError:
    """Map a non-200 token-endpoint response to the typed error it stands for.

    Table: design.md section 2 ("Token endpoint errors"). ``invalid_grant``,
    ``invalid_client_id``, ``app_not_found``, ``invalid_app_access`` and
    ``unsupported_grant_type`` are permanent; ``unknown_error``, any 5xx and any body that is
    not a JSON error object (a maintenance page) are transient.

    Args:
        status: HTTP status code (anything but 200).
        body: The raw response body.
        token_url: The URL that was posted to.
        audience: The ``aud`` that was sent.

    Returns:
        The exception to raise (never raises itself).
    """
    data = _json_object(body)
    error = data.get("error") if data is not None else None
    transient_status = status >= 500 or status in (408, 429)
    if data is None or not isinstance(error, str) or not error:
        what = "an HTML page" if body.lstrip()[:1] == b"<" else "an unexpected body"
        retryable = transient_status
        cls: type[TokenEndpointError] = TransientTokenError if retryable else TokenEndpointError
        return cls(
            f"http_{status}",
            f"the token endpoint answered HTTP {status} with {what}: {_snippet(body)}",
            token_url=token_url,
            audience=audience,
            status=status,
            hint="Salesforce may be in maintenance or an edge proxy failed; try again later."
            if retryable
            else "Check that login_url and site point at a Salesforce token endpoint "
            "(this answer does not come from one).",
        )
    raw_description = data.get("error_description")
    description = ""
    if isinstance(raw_description, str):
        description = clip(scrub(raw_description[: 2 * MESSAGE_LIMIT]))
    error = scrub(error)[:100]
    fallback = TransientTokenError if transient_status else TokenEndpointError
    return token_error(
        _CLASSES.get(error, fallback),
        error,
        description or "(no error_description)",
        token_url=token_url,
        audience=audience,
        status=status,
    )


def token_error(
    cls: type[TokenEndpointError],
    error: str,
    description: str,
    *,
    token_url: str,
    audience: str,
    status: int | None,
    note: str = "",
) -> TokenEndpointError:
    """The typed error for Salesforce's ``error``/``error_description``, with its hint.

    ``invalid_grant`` "login rate exceeded" is a ``LoginRateExceededError`` whatever ``cls``
    says (a subclass of ``InvalidGrantError``).

    Args:
        cls: The class the ``error`` code maps to.
        error: Salesforce's ``error`` code.
        description: Salesforce's ``error_description``.
        token_url: The URL that was (or would have been) posted to.
        audience: The ``aud`` claim.
        status: The HTTP status, or ``None``.
        note: A sentence put before the hint (why nothing was sent, for example).

    Returns:
        The exception (never raises itself).
    """
    lowered = description.lower()
    if cls is InvalidGrantError and "login rate exceeded" in lowered:
        cls, lowered = LoginRateExceededError, "login rate exceeded"
    hint = _HINTS.get((error, lowered)) or _HINTS.get((error, None))
    hint = hint or "See Salesforce's OAuth error codes for this error."
    return cls(
        error,
        description,
        token_url=token_url,
        audience=audience,
        status=status,
        hint=f"{note} {hint}" if note else hint,
    )


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _snippet(body: bytes) -> str:
    """Return a short one-line excerpt of an error body, secret-shaped values masked."""
    text = body[: _SNIPPET * 4].decode("utf-8", "replace")
    text = scrub(" ".join(text.split()))
    if not text:
        return "(empty)"
    return repr(
        text[:_SNIPPET] + ("…" if len(text) > _SNIPPET or len(body) > _SNIPPET * 4 else "")
    )
