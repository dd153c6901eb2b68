"""sfauth: asyncio sessions for Salesforce's OAuth 2.0 JWT Bearer flow.

``AuthSession`` mints RS256 assertions, trades them for an access token at
``{login_url}{site}/services/oauth2/token``, shares one refresh among all concurrent callers and
sends every request through one pooled aiohttp client bound to the org's ``instance_url``.
"""

from ._bulk import Bulk, BulkIngestResult, BulkInputError, BulkJob, BulkJobError, BulkProgress
from ._collections import CollectionError, RecordResult
from ._composite import CompositeResult, Subrequest
from ._env import settings_from_env
from ._keys import load_private_key
from ._limits import ApiUsage
from ._logging import redact_secrets
from ._middleware import SalesforceAuthMiddleware
from ._retry import RetryPolicy
from ._session import AuthSession
from ._settings import Settings
from ._sobjects import SObject, UpsertResult
from ._token import Token
from ._version import __version__
from .exceptions import (
    ApiBudgetError,
    APIError,
    APIVersionError,
    CircuitOpenError,
    ConfigurationError,
    CrossOriginError,
    ForbiddenError,
    InvalidClientError,
    InvalidGrantError,
    InvalidSessionError,
    LoginRateExceededError,
    MalformedRequestError,
    MultipleRecordsError,
    NotFoundError,
    PrivateKeyError,
    RequestLimitError,
    RequestTimeoutError,
    RestApiNotAllowedError,
    SessionClosedError,
    SessionError,
    SFAuthError,
    SignerError,
    TokenEndpointError,
    TokenResponseError,
    TokenStoreError,
    TransientAPIError,
    TransientTokenError,
    TransportError,
    UnsupportedGrantTypeError,
)

__all__ = [
    "APIError",
    "APIVersionError",
    "ApiBudgetError",
    "ApiUsage",
    "AuthSession",
    "Bulk",
    "BulkIngestResult",
    "BulkInputError",
    "BulkJob",
    "BulkJobError",
    "BulkProgress",
    "CircuitOpenError",
    "CollectionError",
    "CompositeResult",
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
    "RecordResult",
    "RequestLimitError",
    "RequestTimeoutError",
    "RestApiNotAllowedError",
    "RetryPolicy",
    "SFAuthError",
    "SObject",
    "SalesforceAuthMiddleware",
    "SessionClosedError",
    "SessionError",
    "Settings",
    "SignerError",
    "Subrequest",
    "Token",
    "TokenEndpointError",
    "TokenResponseError",
    "TokenStoreError",
    "TransientAPIError",
    "TransientTokenError",
    "TransportError",
    "UnsupportedGrantTypeError",
    "UpsertResult",
    "__version__",
    "load_private_key",
    "redact_secrets",
    "settings_from_env",
]
