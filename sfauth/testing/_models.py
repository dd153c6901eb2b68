"""Value types of the emulator: credentials, request records, scripted responses."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "EmulatorCredentials",
    "RequestRecord",
    "ScriptedResponse",
    "TokenRequestRecord",
]


@dataclass(frozen=True, slots=True)
class EmulatorCredentials:
    """Everything a client needs to run the JWT Bearer flow against an :class:`Emulator`.

    Returned by :meth:`Emulator.create_credentials`. The ``repr`` shows neither the private key
    nor the certificate.

    Attributes:
        client_id: Consumer key of the registered connected app (the assertion's ``iss``).
        username: Pre-authorised user (the assertion's ``sub``).
        private_key_pem: Unencrypted PKCS#8 PEM of the RSA-2048 signing key.
        certificate_pem: PEM of the self-signed X.509 certificate registered for the app.
        login_url: Base URL of the emulator's token endpoint (``Emulator.url``).
        audience: Value to use for the assertion's ``aud``.
        org_id: 18-character organisation id (``00D…``).
        user_id: 18-character user id (``005…``).
    """

    client_id: str
    username: str
    private_key_pem: bytes = field(repr=False)
    certificate_pem: bytes = field(repr=False)
    login_url: str
    audience: str
    org_id: str
    user_id: str

    def write_private_key(self, path: str | os.PathLike[str]) -> Path:
        """Write the private key PEM to ``path`` with permissions ``0o600``.

        An existing file is truncated and its permissions are reset to ``0o600``.

        Args:
            path: Destination file.

        Returns:
            The path written, as a :class:`~pathlib.Path`.

        Raises:
            OSError: If the file cannot be written.
        """
        target = Path(path)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(self.private_key_pem)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        finally:
            os.close(fd)
        return target


@dataclass(frozen=True, slots=True)
class TokenRequestRecord:
    """One POST the emulator received on a token endpoint.

    Header and claims are decoded without verification, so they are available even for
    rejected assertions. The ``repr`` leaves out the assertion and the form (credentials).

    Attributes:
        assertion: The raw ``assertion`` form field (``""`` when absent).
        header: Decoded JOSE header (``{}`` when undecodable).
        claims: Decoded claims (``{}`` when undecodable).
        path: Request path, e.g. ``/services/oauth2/token`` or
            ``/customers/services/oauth2/token``.
        host: The ``Host`` header the request came with.
        status: HTTP status the emulator answered.
        error: The ``error`` code of the answer, ``None`` on success.
        form: All posted form fields (first value of each).
        content_type: The request's ``Content-Type`` header (``""`` when absent).
        site: Experience Cloud site prefix without slashes (``""`` for the plain endpoint).
        scripted: Whether the answer came from :meth:`Emulator.script_token_responses`.
        fault: The kind of random fault served (see :meth:`Emulator.inject_faults`), ``None``
            for none.
        headers: Every request header (left out of the ``repr``).
    """

    assertion: str = field(repr=False)
    header: dict[str, object]
    claims: dict[str, object]
    path: str
    host: str
    status: int
    error: str | None
    form: dict[str, str] = field(repr=False)
    content_type: str
    site: str = ""
    scripted: bool = False
    fault: str | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One REST request the emulator received (kept when ``record_requests`` is true).

    The ``repr`` leaves out ``authorization`` and ``headers`` (they carry the bearer token).

    Attributes:
        method: HTTP method.
        path: Request path (without query string).
        query_string: Raw query string, ``""`` when absent.
        host: The ``Host`` header.
        status: HTTP status the emulator answered.
        authorization: Raw ``Authorization`` header value, ``None`` when absent.
        body: Raw request body.
        headers: Copy of the request headers.
        endpoint: Endpoint name as used in :attr:`Emulator.counters`, e.g. ``"query"``.
        fault: The kind of random fault served (see :meth:`Emulator.inject_faults`), ``None``
            for none.
    """

    method: str
    path: str
    query_string: str
    host: str
    status: int
    authorization: str | None = field(repr=False)
    body: bytes
    headers: dict[str, str] = field(repr=False)
    endpoint: str = ""
    fault: str | None = None


@dataclass(frozen=True, slots=True)
class ScriptedResponse:
    """A canned answer served instead of the emulator's normal logic.

    Exactly one body source is used: ``text`` if given, else ``json`` serialised, else an
    empty body.

    Attributes:
        status: HTTP status code.
        json: JSON-serialisable body (ignored when ``text`` is given; ``None`` means no body).
        text: Raw text body.
        content_type: ``Content-Type`` header; defaults to ``application/json;charset=UTF-8``
            for ``json`` bodies and ``text/plain;charset=UTF-8`` for ``text`` bodies.
        headers: Extra response headers, e.g. ``{"Retry-After": "2"}``.
        delay: Seconds to wait before answering (or before resetting).
        reset: Close the connection without any answer (the client sees a disconnect).
    """

    status: int = 200
    json: object = None
    text: str | None = None
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    reset: bool = False
