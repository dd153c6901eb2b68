"""The emulator: a local Salesforce (token endpoint + a slice of the REST API) on aiohttp.web."""

from __future__ import annotations

import asyncio
import base64
import collections
import datetime as dt
import secrets
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Self

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from sfauth.testing._bulk import BulkApi, IngestJob, QueryJob
from sfauth.testing._collections import CollectionsApi
from sfauth.testing._composite import CompositeApi, internal_route
from sfauth.testing._faults import FAULT_KINDS, SLOW_DELAY, FaultInjector, serve_fault
from sfauth.testing._ids import IdFactory, random_consumer_key
from sfauth.testing._keys import (
    ParsedJwt,
    TlsMaterial,
    generate_key_and_certificate,
    load_rsa_public_key,
    parse_jwt,
)
from sfauth.testing._models import (
    EmulatorCredentials,
    RequestRecord,
    ScriptedResponse,
    TokenRequestRecord,
)
from sfauth.testing._rest import RestApi
from sfauth.testing._schema import Schema
from sfauth.testing._state import Cursor, Handler, Session, User, json_response, serve_script
from sfauth.testing._store import DmlError, RecordStore
from sfauth.testing._token import (
    LOGIN_AUDIENCE,
    TEST_AUDIENCE,
    TokenRejected,
    check_assertion,
    read_token_form,
)

__all__ = ["Emulator"]

_NOT_STARTED = (
    "the emulator has not been started: use `async with Emulator() as emu:` (or `await "
    "emu.start()`, then `await emu.stop()`)"
)

_INDUSTRIES = ("Technology", "Finance", "Healthcare", "Manufacturing", "Retail")
_SESSION_INVALID = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
_REST_REJECTED = [
    {
        "message": "This session is not valid for use with the REST API",
        "errorCode": "INVALID_SESSION_ID",
    }
]


def _names(what: str, names: Collection[str], known: frozenset[str]) -> frozenset[str]:
    if isinstance(names, str):
        raise TypeError(f"{what} must be a collection of names, not a single string")
    selected = frozenset(names)
    if not selected:
        raise ValueError(f"{what} must not be empty")
    unknown = selected - known
    if unknown:
        raise ValueError(
            f"unknown {what}: {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})"
        )
    return selected


def _wall_clock(now: Callable[[], dt.datetime] | dt.datetime | None) -> Callable[[], dt.datetime]:
    """The emulator's wall clock from its ``now`` argument (see :class:`Emulator`)."""
    if now is None:
        return lambda: dt.datetime.now(dt.UTC)
    if isinstance(now, dt.datetime):
        if now.tzinfo is None:
            raise TypeError(
                "Emulator(now=...) needs an aware datetime, e.g. "
                "datetime(2024, 5, 15, 12, 0, tzinfo=timezone.utc)"
            )
        fixed = now
        return lambda: fixed
    if not callable(now):
        raise TypeError(
            f"Emulator(now=...) takes a function returning an aware datetime, or an aware "
            f"datetime; got {type(now).__name__}"
        )
    return now


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


class Emulator(RestApi, CollectionsApi, CompositeApi, BulkApi):
    """A local Salesforce org for tests and demos: JWT Bearer token endpoint plus REST API.

    The token endpoint really verifies RS256 assertions against the registered certificates and
    enforces ``iss``/``sub``/``aud``/``exp`` with Salesforce's error bodies. It accepts what
    Salesforce accepts: a ``typ`` header, extra claims, and an ``exp`` sent as a float, as a
    string of digits or far ahead (epoch milliseconds); only an ``exp`` in the past is
    ``expired authorization code``. Anything malformed (not a form, not a JWT, a header or
    claims that are not JSON objects, a non-string ``alg``/``kid``/``typ``) gets a 400 with
    Salesforce's body (``unsupported_grant_type`` or ``invalid_grant``/``invalid assertion``),
    never a 500. The REST endpoints
    (versions, resources, SOQL query with paging, sObject CRUD and upsert, limits, userinfo,
    revoke) work on in-memory data and answer ``401 INVALID_SESSION_ID`` for unknown, expired or
    revoked sessions. Everything it sees is counted and (optionally) recorded. Answers can be
    scripted (:meth:`script_token_responses`, :meth:`script_rest_responses`) or replaced at a
    seeded random rate by transient faults (:meth:`inject_faults`) for soak tests.

    All state lives on the instance; handlers do no crypto and no logging on REST paths. A fresh
    emulator holds 250 ``Account`` records (``Name`` ``"Account 0001"``…, ``Industry``).

    Example::

        async with Emulator() as emu:
            creds = emu.create_credentials()
            ...  # point the client at creds.login_url

    Args:
        host: Interface to listen on.
        port: TCP port of the first site; ``0`` picks a free port.
        session_timeout: Seconds of inactivity after which a session expires (sliding: every
            successful use restarts the period).
        page_size: Default query batch size (``nextRecordsUrl`` paging).
        api_versions: Versions served under ``/services/data/v{version}``.
        tls: Serve HTTPS with a throw-away trustme CA (needs the ``trustme`` package).
        record_requests: Keep a :class:`RequestRecord` per REST request.
        daily_api_limit: ``M`` of ``Sforce-Limit-Info: api-usage=N/M`` (not enforced).
        clock: Monotonic clock in seconds used for session expiry (inject a fake one in tests).
        default_accounts: Number of ``Account`` records seeded at construction.
        sandbox: Play a sandbox: accept ``aud=https://test.salesforce.com`` instead of
            ``https://login.salesforce.com`` (the emulator's own URL is accepted either way).
        schema: The objects and fields writes and SOQL are checked against (default: a new
            :class:`Schema` with the standard objects); also reachable as :attr:`schema`.
        now: The wall clock for ``CreatedDate``/``LastModifiedDate`` and SOQL's relative date
            literals (``TODAY``…; the org's users are in UTC): a function returning an aware
            datetime (called at each write and query), or one aware datetime (a clock that
            stands still). Defaults to the real time.

    Raises:
        ValueError: If ``page_size`` or ``session_timeout`` is not positive or ``api_versions``
            is empty.
        TypeError: If ``now`` is neither a function nor an aware datetime.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        session_timeout: float = 7200.0,
        page_size: int = 2000,
        api_versions: Sequence[str] = ("60.0", "61.0", "62.0"),
        tls: bool = False,
        record_requests: bool = True,
        daily_api_limit: int = 15000,
        clock: Callable[[], float] = time.monotonic,
        default_accounts: int = 250,
        sandbox: bool = False,
        schema: Schema | None = None,
        now: Callable[[], dt.datetime] | dt.datetime | None = None,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be positive")
        if session_timeout <= 0:
            raise ValueError("session_timeout must be positive")
        if not api_versions:
            raise ValueError("api_versions must not be empty")
        self.host = host
        self.port = port
        self.session_timeout = session_timeout
        self.page_size = page_size
        self.api_versions: tuple[str, ...] = tuple(api_versions)
        self.tls = tls
        self.record_requests = record_requests
        self.daily_api_limit = daily_api_limit
        self.clock = clock
        #: Authenticated REST endpoints answer 401 "not valid for use with the REST API".
        self.reject_rest_api = False
        #: Authenticated endpoints answer 401 "Session expired or invalid" even for good tokens.
        self.always_401 = False
        #: Path prefixes whose authenticated endpoints answer 401 ``INVALID_SESSION_ID`` to
        #: every session, also one that works everywhere else (an endpoint the session may
        #: not use); e.g. ``emu.sessions_refused_at.add("/services/data/v62.0/limits")``.
        self.sessions_refused_at: set[str] = set()
        #: Accepted ``aud`` values; the emulator's own URL (its "My Domain") is added on
        #: :meth:`start`. Like a real org, a production emulator refuses the sandbox audience
        #: and a sandbox emulator (``sandbox=True``) the production one.
        self._audience_for_credentials = TEST_AUDIENCE if sandbox else LOGIN_AUDIENCE
        self.audiences: set[str] = {self._audience_for_credentials}
        #: ``(endpoint name, status)`` → count, e.g. ``("query", 200)`` or ``("token", 400)``.
        self.counters: collections.Counter[tuple[str, int]] = collections.Counter()
        #: Every REST request (when ``record_requests``), oldest first.
        self.requests: list[RequestRecord] = []
        #: Every token-endpoint POST, oldest first.
        self.token_requests: list[TokenRequestRecord] = []
        #: Fault kind → number of requests it hit (see :meth:`inject_faults`); never reset.
        self.faults_injected: collections.Counter[str] = collections.Counter()
        #: Seconds every REST answer waits before it is sent (long-running requests).
        self.response_delay = 0.0
        #: REST requests being answered now, and the most at once since the last
        #: :meth:`reset_peak` (what the org sees of a client's concurrency).
        self.in_flight = 0
        self.peak_in_flight = 0
        self._in_flight_waiters: list[tuple[int, asyncio.Future[None]]] = []

        self._versions = frozenset(self.api_versions)
        self._ids = IdFactory()
        #: The sObjects and fields this emulator knows (add custom ones, or load a describe).
        self.schema = schema if schema is not None else Schema()
        self._store = RecordStore(self.schema, self._ids, _wall_clock(now))
        self._default_org_id = self._ids.new("00D")
        self._apps: dict[str, rsa.RSAPublicKey] = {}
        self._users: dict[str, User] = {}
        self._sessions: dict[str, Session] = {}
        self._cursors: collections.OrderedDict[str, Cursor] = collections.OrderedDict()
        self._communities: dict[str, str] = {}
        self._token_script: collections.deque[ScriptedResponse] = collections.deque()
        self._token_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._rest_script: collections.deque[ScriptedResponse] = collections.deque()
        self._faults: FaultInjector | None = None
        self._token_request_count = 0
        self._api_usage = 0
        self._instance_url: str | None = None
        self._url: str | None = None
        self._urls: list[str] = []
        self._runner: web.AppRunner | None = None
        self._internal: web.UrlDispatcher | None = None
        #: Seconds a Bulk job stays ``InProgress`` before it runs (to catch it running).
        self.bulk_processing_delay = 0.0
        #: Bulk API 2.0 jobs by id (ingest and query), oldest first.
        self.bulk_jobs: dict[str, IngestJob | QueryJob] = {}
        self._bulk_tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._tls: TlsMaterial | None = None
        #: Id of the built-in ``User`` that owns and created what :meth:`seed` adds.
        self.admin_user_id = self._store.insert(
            self.schema.get("User"),  # type: ignore[arg-type]
            {
                "Username": "admin@emulator.invalid",
                "LastName": "Admin",
                "FirstName": "Emulator",
                "Email": "admin@emulator.invalid",
                "Alias": "eadmin",
            },
            "",
            system=True,
        )
        user_record = self._store.find(self.schema.get("User"), self.admin_user_id)  # type: ignore[arg-type]
        assert user_record is not None
        for name in ("OwnerId", "CreatedById", "LastModifiedById"):
            user_record[name] = self.admin_user_id
        if default_accounts:
            self.seed(
                "Account",
                (
                    {
                        "Name": f"Account {n:04d}",
                        "Industry": _INDUSTRIES[(n - 1) % len(_INDUSTRIES)],
                    }
                    for n in range(1, default_accounts + 1)
                ),
            )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind the first site and start serving.

        Raises:
            RuntimeError: If the emulator was already started.
            OSError: If the address cannot be bound.
            ImportError: If ``tls=True`` and trustme is not installed.
        """
        if self._started:
            raise RuntimeError("an Emulator can only be started once")
        self._started = True
        if self.tls:
            try:
                self._tls = TlsMaterial([self.host])
            except ModuleNotFoundError as exc:
                if exc.name != "trustme":
                    raise
                raise ModuleNotFoundError(
                    "Emulator(tls=True) needs trustme: pip install trustme, or install sfauth "
                    "with its testing extra (pip install '/path/to/sfauth[testing]')",
                    name="trustme",
                ) from None
        # Bulk API 2.0 takes up to 150 MB per job upload ("Upload Job Data").
        app = web.Application(client_max_size=150 * 1024 * 1024)
        self._add_routes(app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        self._runner = runner
        try:
            self._url = await self._open_site(self.port)
        except BaseException:
            await self.stop()
            raise
        self.audiences.add(self._url)

    async def stop(self) -> None:
        """Close every site and release the sockets. Safe to call more than once."""
        runner, self._runner = self._runner, None
        tasks, self._bulk_tasks = self._bulk_tasks, set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _open_site(self, port: int) -> str:
        assert self._runner is not None
        sock = _bind(self.host, port)
        try:
            ssl_context = self._tls.server_context if self._tls is not None else None
            site = web.SockSite(self._runner, sock, ssl_context=ssl_context)
            await site.start()
        except BaseException:
            sock.close()
            raise
        bound_port = sock.getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        url = f"{'https' if self._tls else 'http'}://{host}:{bound_port}"
        self._urls.append(url)
        return url

    async def add_instance(self, port: int = 0) -> str:
        """Open one more listening site (same app, same data).

        Use it with :meth:`set_instance_url` to simulate an org whose ``instance_url`` moves.

        Args:
            port: TCP port to listen on; ``0`` picks a free one.

        Returns:
            The new site's base URL (no trailing slash).

        Raises:
            RuntimeError: If the emulator is not running.
        """
        if self._runner is None:
            raise RuntimeError(_NOT_STARTED)
        return await self._open_site(port)

    @property
    def url(self) -> str:
        """Base URL of the first site: the login host and the default ``instance_url``.

        Raises:
            RuntimeError: If the emulator has not been started.
        """
        if self._url is None:
            raise RuntimeError(_NOT_STARTED)
        return self._url

    @property
    def urls(self) -> list[str]:
        """Base URLs of all sites, the first one first."""
        return list(self._urls)

    @property
    def instance_url(self) -> str:
        """The ``instance_url`` the next token response will carry."""
        return self._instance_url if self._instance_url is not None else self.url

    def set_instance_url(self, url: str | None) -> None:
        """Change the ``instance_url`` returned by subsequent token responses.

        Existing sessions stay valid on every site.

        Args:
            url: New base URL (a trailing slash is dropped); ``None`` restores :attr:`url`.
        """
        self._instance_url = url.rstrip("/") if url is not None else None

    def client_ssl_context(self) -> ssl.SSLContext:
        """Return a client SSL context that trusts the emulator's CA.

        Returns:
            A fresh :class:`ssl.SSLContext`.

        Raises:
            RuntimeError: If the emulator does not serve HTTPS or has not been started.
        """
        if self._tls is None:
            raise RuntimeError("the emulator serves HTTPS only when started with tls=True")
        return self._tls.client_context()

    @property
    def ca_pem(self) -> bytes:
        """PEM of the emulator's CA certificate (``tls=True`` only).

        Raises:
            RuntimeError: If the emulator does not serve HTTPS or has not been started.
        """
        if self._tls is None:
            raise RuntimeError("the emulator serves HTTPS only when started with tls=True")
        return self._tls.ca_pem

    # ------------------------------------------------------------------ apps, users, sessions

    def register_app(self, client_id: str, certificate: bytes | str | x509.Certificate) -> None:
        """Register (or replace) a connected app and the certificate its assertions verify with.

        Args:
            client_id: The app's consumer key (the assertion's ``iss``).
            certificate: The app's X.509 certificate: PEM bytes/str or a loaded certificate.

        Raises:
            ValueError: If the certificate does not parse or its key is not RSA.
        """
        self._apps[client_id] = load_rsa_public_key(certificate)

    def register_user(
        self,
        username: str,
        *,
        client_id: str,
        approved: bool = True,
        active: bool = True,
        org_id: str | None = None,
        user_id: str | None = None,
        name: str | None = None,
    ) -> None:
        """Register a user, or update one, and set whether it is pre-authorised for an app.

        Calling it again for the same username keeps its ids (unless given) and approvals for
        other apps; ``approved`` and ``active`` apply to this call's ``client_id``/the user.

        Args:
            username: Salesforce username (the assertion's ``sub``).
            client_id: Connected app the approval applies to.
            approved: Whether the user's profile is pre-authorised for the app.
            active: Whether the user is active.
            org_id: 18-character org id (``00D…``); defaults to the emulator's org.
            user_id: 18-character user id (``005…``); generated when omitted.
            name: Display name for userinfo; defaults to the username's local part.
        """
        user = self._users.get(username)
        if user is None:
            display = name or username.partition("@")[0]
            user = User(
                username=username,
                user_id=user_id or self._user_record(username, display, active),
                org_id=org_id or self._default_org_id,
                active=active,
                name=display,
            )
            self._users[username] = user
        else:
            user.user_id = user_id or user.user_id
            user.org_id = org_id or user.org_id
            user.name = name or user.name
            user.active = active
        if approved:
            user.approved.add(client_id)
        else:
            user.approved.discard(client_id)

    def _user_record(self, username: str, name: str, active: bool) -> str:
        """Insert the ``User`` record of a registered user; return its id."""
        first, _, last = name.rpartition(" ")
        values: dict[str, object] = {
            "Username": username[:80],
            "LastName": (last or name or "User")[:80],
            "Email": username if "@" in username else f"{username}@emulator.invalid",
            "IsActive": active,
        }
        if first:
            values["FirstName"] = first[:40]
        try:
            return self._store.insert(
                self.schema.get("User"),  # type: ignore[arg-type]
                values,
                self.admin_user_id,
                system=True,
            )
        except DmlError:  # a username or e-mail the User object refuses: no record for it
            return self._ids.new("005")

    def create_credentials(
        self, username: str = "etl@example.com", client_id: str | None = None
    ) -> EmulatorCredentials:
        """Generate an RSA-2048 key and certificate, register the app and user, return them.

        Args:
            username: User to register (approved and active).
            client_id: Consumer key; a random Salesforce-shaped one (``3MVG9…``) when ``None``.

        Returns:
            Credentials whose ``login_url`` is :attr:`url`.

        Raises:
            RuntimeError: If the emulator has not been started (the login URL is unknown).
        """
        login_url = self.url
        client_id = client_id or random_consumer_key()
        key_pem, certificate_pem = generate_key_and_certificate(f"sfauth emulator {username}")
        self.register_app(client_id, certificate_pem)
        self.register_user(username, client_id=client_id)
        user = self._users[username]
        return EmulatorCredentials(
            client_id=client_id,
            username=username,
            private_key_pem=key_pem,
            certificate_pem=certificate_pem,
            login_url=login_url,
            audience=self._audience_for_credentials,
            org_id=user.org_id,
            user_id=user.user_id,
        )

    def expire_all_sessions(self) -> None:
        """Invalidate every access token issued so far."""
        self._sessions.clear()

    def revoke(self, access_token: str) -> bool:
        """Invalidate one access token.

        Args:
            access_token: The token to revoke.

        Returns:
            Whether the token was a live session.
        """
        return self._sessions.pop(access_token, None) is not None

    @property
    def active_sessions(self) -> int:
        """Number of sessions not revoked (expired ones are dropped lazily on use)."""
        return len(self._sessions)

    # ------------------------------------------------------------------ faults and counters

    def script_token_responses(self, responses: Iterable[ScriptedResponse]) -> None:
        """Queue canned answers for the next token requests, served in order, as-is.

        A scripted answer replaces the normal verification; the request is still counted and
        recorded. When the queue is empty the normal logic resumes.

        Args:
            responses: Answers to append to the queue.
        """
        self._token_script.extend(responses)

    def clear_scripts(self) -> None:
        """Drop every queued scripted answer, token and REST alike; normal logic resumes."""
        self._token_script.clear()
        self._rest_script.clear()

    def script_rest_responses(self, responses: Iterable[ScriptedResponse]) -> None:
        """Queue canned answers for the next REST requests (any endpoint but the token one).

        Served in order and as-is, before authentication (no ``Sforce-Limit-Info`` is added and
        the API usage does not grow); the requests are still counted and recorded. The next
        REST request of any kind gets the next answer, including the unauthenticated
        ``GET /services/data/`` that ``AuthSession(api_version="latest")`` sends once: resolve
        the version first (or use a fixed one) before scripting answers meant for a query.

        Args:
            responses: Answers to append to the queue.
        """
        self._rest_script.extend(responses)

    def inject_faults(
        self,
        rate: float,
        *,
        seed: int | None = None,
        endpoints: Collection[str] | None = None,
        kinds: Collection[str] | None = None,
    ) -> None:
        """Answer a random share of requests with transient faults, reproducibly (soak tests).

        Each request on a selected endpoint gets, with probability ``rate``, a fault drawn
        uniformly from the enabled kinds that apply to it (see :data:`FAULT_KINDS`) instead of
        its normal answer. The draws come from a :class:`random.Random` owned by the emulator,
        so the same seed and the same request order give the same faults. Requests no enabled
        kind applies to (a REST POST or PATCH when only ``"reset"`` is enabled, say) always get
        their normal answer.

        Faults are decided before authentication and change no state: a faulted POST creates
        nothing, a faulted token request opens no session, and a faulted REST answer carries no
        ``Sforce-Limit-Info`` and does not count toward :attr:`api_usage` (a ``"slow"`` fault
        is the normal answer, late, and counts as usual). Queued scripted responses
        (:meth:`script_token_responses`, :meth:`script_rest_responses`) take precedence and
        consume no randomness. Faulted requests are counted in :attr:`counters` with the
        status served (``0`` for a reset), in :attr:`faults_injected` by kind, and recorded
        with :attr:`RequestRecord.fault`/:attr:`TokenRequestRecord.fault` set.

        Each call replaces the previous configuration and restarts the generator.

        Args:
            rate: Probability, from 0 to 1, that a request gets a fault; ``0`` turns
                injection off.
            seed: Seed of the generator; ``None`` seeds it from the OS (not reproducible).
            endpoints: Endpoint names as used in :attr:`counters` (``"token"``, ``"query"``,
                ``"query_more"``, ``"sobject_create"``, …); ``None`` means every REST
                endpoint and the token endpoint.
            kinds: Fault kinds to draw from, a subset of :data:`FAULT_KINDS`; ``None`` means
                all of them.

        Raises:
            ValueError: If ``rate`` is not within 0 to 1, or ``endpoints`` or ``kinds`` is
                empty or holds an unknown name.
            TypeError: If ``endpoints`` or ``kinds`` is a single string.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, got {rate!r}")
        selected_endpoints: frozenset[str] | None = None
        if endpoints is not None:
            selected_endpoints = _names("endpoints", endpoints, self._endpoint_names())
        selected_kinds = frozenset(FAULT_KINDS)
        if kinds is not None:
            selected_kinds = _names("kinds", kinds, selected_kinds)
        self._faults = (
            FaultInjector(rate, seed, selected_endpoints, selected_kinds) if rate > 0 else None
        )

    def _pick_fault(self, endpoint: str, method: str) -> str | None:
        faults = self._faults
        if faults is None:
            return None
        kind = faults.pick(endpoint, method)
        if kind is not None:
            self.faults_injected[kind] += 1
        return kind

    @property
    def token_request_count(self) -> int:
        """Number of POSTs received on any token endpoint."""
        return self._token_request_count

    def _wake_token_waiters(self) -> None:
        pending = []
        for count, waiter in self._token_waiters:
            if self._token_request_count >= count and not waiter.done():
                waiter.set_result(None)
            elif not waiter.done():
                pending.append((count, waiter))
        self._token_waiters = pending

    async def wait_for_token_requests(self, count: int) -> None:
        """Return once at least ``count`` token requests have arrived.

        They may still be in progress, e.g. held by a scripted ``delay``.

        Args:
            count: The number of token requests to wait for.
        """
        if self._token_request_count >= count:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._token_waiters.append((count, waiter))
        await waiter

    @property
    def api_usage(self) -> int:
        """``N`` of ``Sforce-Limit-Info: api-usage=N/M``: authenticated REST calls so far.

        Settable, to play an org that has already used part of its allowance.
        """
        return self._api_usage

    @api_usage.setter
    def api_usage(self, used: int) -> None:
        if type(used) is not int or used < 0:
            raise ValueError(f"api_usage must be an int >= 0, got {used!r}")
        self._api_usage = used

    def _wake_in_flight_waiters(self) -> None:
        pending = []
        for count, waiter in self._in_flight_waiters:
            if self.in_flight >= count and not waiter.done():
                waiter.set_result(None)
            elif not waiter.done():
                pending.append((count, waiter))
        self._in_flight_waiters = pending

    async def wait_for_in_flight(self, count: int) -> None:
        """Return once at least ``count`` REST requests are being answered at once.

        Args:
            count: The number of requests in flight to wait for.
        """
        if self.in_flight >= count:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._in_flight_waiters.append((count, waiter))
        await waiter

    def reset_peak(self) -> None:
        """Start counting :attr:`peak_in_flight` afresh from the requests in flight now."""
        self.peak_in_flight = self.in_flight

    # ------------------------------------------------------------------ data

    def seed(self, sobject: str, records: Iterable[Mapping[str, object]]) -> list[str]:
        """Insert records as the built-in admin user, validated like REST API inserts.

        Ids are 18-character with the object's key prefix and the case-safe checksum. Unlike
        a REST insert, seeding may set read-only system fields (``CreatedDate``, ``OwnerId``,
        ``IsDeleted``, …) so tests can build history; ``Id`` may not be set.

        Args:
            sobject: sObject API name, e.g. ``"Account"``; a custom object must be in
                :attr:`schema` first (``emu.schema.add_object("Invoice__c", {...})``).
            records: Field values of each record.

        Returns:
            The new ids, in input order.

        Raises:
            ValueError: If the object is unknown, or a record is one Salesforce would refuse
                (the message has Salesforce's error code and text, and the record's index).
        """
        target = self.schema.get(sobject)
        if target is None:
            raise ValueError(
                f"no sObject named {sobject!r} in the emulator's schema: add it with "
                f"emu.schema.add_object({sobject!r}, {{field: type}}) or "
                "emu.schema.load_describe()"
            )
        ids = []
        for index, record in enumerate(records):
            try:
                ids.append(self._store.insert(target, record, self.admin_user_id, system=True))
            except DmlError as exc:
                raise ValueError(
                    f"{target.name} record {index}: {exc.error_code}: {exc.message}"
                ) from None
        return ids

    def records(self, sobject: str, *, include_deleted: bool = False) -> list[dict[str, object]]:
        """Return copies of an object's records, with ``Id`` and the system fields.

        Args:
            sobject: sObject API name (case-insensitive).
            include_deleted: Also return records in the recycle bin (``IsDeleted`` true).

        Returns:
            The records in insertion order (empty for unknown objects).
        """
        target = self.schema.get(sobject)
        if target is None:
            return []
        return [dict(r) for r in self._store.rows(target, deleted=include_deleted)]

    # ------------------------------------------------------------------ routing

    def _add_routes(self, app: web.Application) -> None:
        token = self._token
        app.router.add_post("/services/oauth2/token", token)
        app.router.add_post("/{site:.+}/services/oauth2/token", token)
        for method, path, name, handler, auth, data_api in self._routes():
            app.router.add_route(method, path, self._endpoint(name, handler, auth, data_api))

    def _internal_router(self) -> web.UrlDispatcher:
        """The REST routes bound to their handlers, for Composite's subrequests."""
        if self._internal is None:
            router = web.UrlDispatcher()
            for method, path, name, handler, _, _ in self._routes():
                if name != "composite":  # no composite inside a composite
                    router.add_route(method, path, internal_route(name, handler))
            self._internal = router
        return self._internal

    def _endpoint_names(self) -> frozenset[str]:
        return frozenset(route[2] for route in self._routes()) | {"token"}

    def _routes(self) -> list[tuple[str, str, str, Handler, bool, bool]]:
        """Return the REST routes: ``(method, path, endpoint name, handler, auth, data API)``."""
        data = "/services/data/{ver}"
        sobjects = data + "/sobjects/{sobject}"
        composite = data + "/composite/sobjects"
        return [
            ("GET", "/services/data", "versions", self._versions_handler, False, False),
            ("GET", "/services/data/", "versions", self._versions_handler, False, False),
            ("GET", data, "resources", self._resources, True, True),
            ("GET", data + "/", "resources", self._resources, True, True),
            ("GET", data + "/query", "query", self._query, True, True),
            ("GET", data + "/query/", "query", self._query, True, True),
            ("GET", data + "/query/{locator}", "query_more", self._query_more, True, True),
            ("GET", data + "/queryAll", "query_all", self._query_all, True, True),
            ("GET", data + "/queryAll/", "query_all", self._query_all, True, True),
            ("GET", data + "/queryAll/{locator}", "query_more", self._query_more, True, True),
            ("GET", data + "/limits", "limits", self._limits, True, True),
            ("GET", data + "/limits/", "limits", self._limits, True, True),
            ("POST", data + "/composite", "composite", self._composite, True, True),
            ("POST", data + "/composite/", "composite", self._composite, True, True),
            ("POST", composite, "collection_create", self._collection_create, True, True),
            ("PATCH", composite, "collection_update", self._collection_update, True, True),
            ("DELETE", composite, "collection_delete", self._collection_delete, True, True),
            (
                "PATCH",
                composite + "/{sobject}/{field}",
                "collection_upsert",
                self._collection_upsert,
                True,
                True,
            ),
            ("GET", data + "/sobjects", "describe_global", self._describe_global, True, True),
            ("GET", data + "/sobjects/", "describe_global", self._describe_global, True, True),
            ("GET", sobjects + "/describe", "describe", self._describe, True, True),
            ("GET", sobjects + "/describe/", "describe", self._describe, True, True),
            ("GET", sobjects, "sobject_info", self._sobject_info, True, True),
            ("POST", sobjects, "sobject_create", self._sobject_create, True, True),
            ("POST", sobjects + "/", "sobject_create", self._sobject_create, True, True),
            ("GET", sobjects + "/{id}", "sobject_get", self._sobject_get, True, True),
            ("PATCH", sobjects + "/{id}", "sobject_update", self._sobject_update, True, True),
            ("DELETE", sobjects + "/{id}", "sobject_delete", self._sobject_delete, True, True),
            (
                "PATCH",
                sobjects + "/{field}/{value}",
                "sobject_upsert",
                self._sobject_upsert,
                True,
                True,
            ),
            (
                "GET",
                sobjects + "/{field}/{value}",
                "sobject_get_by",
                self._sobject_get_by,
                True,
                True,
            ),
            ("GET", "/services/oauth2/userinfo", "userinfo", self._userinfo, True, False),
            ("POST", "/services/oauth2/revoke", "revoke", self._revoke_handler, False, False),
            *self._bulk_routes(data),
            ("*", data + "/{tail:.*}", "not_found", self._not_found, True, True),
            ("*", "/services/async/{tail:.*}", "async_api", self._async_api, False, False),
        ]

    def _bulk_routes(self, data: str) -> list[tuple[str, str, str, Handler, bool, bool]]:
        """Bulk API 2.0's routes (``/jobs/ingest``, ``/jobs/query``), with and without a "/"."""
        ingest, query = data + "/jobs/ingest", data + "/jobs/query"
        results = "/{results:(?:successfulResults|failedResults|unprocessedrecords)}"
        routes: list[tuple[str, str, str, Handler]] = [
            ("POST", ingest, "bulk_ingest_create", self._bulk_ingest_create),
            ("GET", ingest, "bulk_ingest_list", self._bulk_list),
            ("GET", ingest + "/{job}", "bulk_ingest_info", self._bulk_info),
            ("PATCH", ingest + "/{job}", "bulk_ingest_state", self._bulk_ingest_state),
            ("DELETE", ingest + "/{job}", "bulk_delete", self._bulk_delete),
            ("PUT", ingest + "/{job}/batches", "bulk_ingest_upload", self._bulk_ingest_upload),
            ("GET", ingest + "/{job}" + results, "bulk_ingest_results", self._bulk_ingest_results),
            ("POST", query, "bulk_query_create", self._bulk_query_create),
            ("GET", query, "bulk_query_list", self._bulk_list),
            ("GET", query + "/{job}", "bulk_query_info", self._bulk_info),
            ("PATCH", query + "/{job}", "bulk_query_state", self._bulk_query_state),
            ("DELETE", query + "/{job}", "bulk_delete", self._bulk_delete),
            ("GET", query + "/{job}/results", "bulk_query_results", self._bulk_query_results),
        ]
        return [
            (method, path + slash, name, handler, True, True)
            for method, path, name, handler in routes
            for slash in ("", "/")
        ]

    def _endpoint(
        self, name: str, handler: Handler, auth: bool, data_api: bool
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            if self._in_flight_waiters:
                self._wake_in_flight_waiters()
            try:
                if self.response_delay:
                    await asyncio.sleep(self.response_delay)
                return await answer(request)
            finally:
                self.in_flight -= 1

        async def answer(request: web.Request) -> web.StreamResponse:
            body = await request.read() if request.body_exists else b""
            status: int
            response: web.StreamResponse
            fault: str | None = None
            if self._rest_script:
                response, status = await serve_script(request, self._rest_script.popleft())
            else:
                fault = self._pick_fault(name, request.method)
                if fault is None or fault == "slow":
                    if fault is not None:
                        await asyncio.sleep(SLOW_DELAY)
                    response = await self._dispatch(request, handler, auth, data_api, body)
                    status = response.status
                else:
                    response, status, _ = serve_fault(request, fault, token=False)
            self.counters[(name, status)] += 1
            if self.record_requests:
                self.requests.append(
                    RequestRecord(
                        method=request.method,
                        path=request.path,
                        query_string=request.rel_url.raw_query_string,
                        host=request.host,
                        status=status,
                        authorization=request.headers.get("Authorization"),
                        body=body,
                        headers=dict(request.headers),
                        endpoint=name,
                        fault=fault,
                    )
                )
            return response

        return endpoint

    async def _dispatch(
        self, request: web.Request, handler: Handler, auth: bool, data_api: bool, body: bytes
    ) -> web.Response:
        if not auth:
            return await handler(request, None, body)
        session = self._authenticate(request)
        if session is None or self.always_401 or self._refused_here(request.path):
            return json_response(401, _SESSION_INVALID)
        if data_api and self.reject_rest_api:
            return json_response(401, _REST_REJECTED)
        self._api_usage += 1
        response = await handler(request, session, body)
        response.headers["Sforce-Limit-Info"] = (
            f"api-usage={self._api_usage}/{self.daily_api_limit}"
        )
        return response

    def _refused_here(self, path: str) -> bool:
        return any(path.startswith(prefix) for prefix in self.sessions_refused_at)

    async def _async_api(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        """Bulk API 1.0 and the other ``/services/async/`` endpoints: only their auth check.

        They read the session from ``X-SFDC-Session`` (or ``Authorization``) and answer an
        invalid one with HTTP 400 ``InvalidSessionId`` (XML, or JSON when the request is
        JSON), as Salesforce does; a valid session gets 501 ``EMULATOR_UNSUPPORTED``.
        """
        wants_json = "json" in request.headers.get("Content-Type", "") or "json" in (
            request.headers.get("Accept", "")
        )
        if self._authenticate(request) is None:
            message = "Invalid session id"
            if wants_json:
                return json_response(
                    400, {"exceptionCode": "InvalidSessionId", "exceptionMessage": message}
                )
            xml = (
                '<?xml version="1.0" encoding="UTF-8"?><error '
                'xmlns="http://www.force.com/2009/06/asyncapi/dataload">'
                f"<exceptionCode>InvalidSessionId</exceptionCode>"
                f"<exceptionMessage>{message}</exceptionMessage></error>"
            )
            return web.Response(status=400, text=xml, content_type="application/xml")
        return json_response(
            501,
            {
                "exceptionCode": "EMULATOR_UNSUPPORTED",
                "exceptionMessage": "the sfauth emulator does not implement the "
                "/services/async/ APIs beyond their session check",
            },
        )

    def _authenticate(self, request: web.Request) -> Session | None:
        header = request.headers.get("Authorization")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() not in ("bearer", "oauth"):
                return None
        elif request.path.startswith("/services/async/"):
            token = request.headers.get("X-SFDC-Session", "")
        else:
            return None
        token = token.strip()
        session = self._sessions.get(token)
        if session is None:
            return None
        now = self.clock()
        if now - session.last_use > self.session_timeout:
            del self._sessions[token]
            return None
        session.last_use = now
        return session

    # ------------------------------------------------------------------ token endpoint

    async def _token(self, request: web.Request) -> web.StreamResponse:
        site = request.match_info.get("site", "").strip("/")
        form = await read_token_form(request)
        assertion = form.get("assertion", "")
        parsed = parse_jwt(assertion)
        self._token_request_count += 1
        if self._token_waiters:
            self._wake_token_waiters()
        scripted = bool(self._token_script)
        fault = None if scripted else self._pick_fault("token", request.method)
        error: str | None
        if fault is not None and fault != "slow":
            response, status, error = serve_fault(request, fault, token=True)
        elif scripted:
            script = self._token_script.popleft()
            response, status = await serve_script(request, script)
            payload = script.json
            error = None
            if isinstance(payload, dict) and isinstance(payload.get("error"), str):
                error = payload["error"]
        else:
            if fault is not None:
                await asyncio.sleep(SLOW_DELAY)
            try:
                payload = self._grant(request, site, form, parsed if assertion else None)
            except TokenRejected as rejected:
                error = rejected.error
                response = json_response(
                    400, {"error": rejected.error, "error_description": rejected.description}
                )
            else:
                error = None
                response = json_response(200, payload)
            status = response.status
        self.counters[("token", status)] += 1
        self.token_requests.append(
            TokenRequestRecord(
                assertion=assertion,
                header=parsed.header,
                claims=parsed.claims,
                path=request.path,
                host=request.host,
                status=status,
                error=error,
                form=form,
                content_type=request.headers.get("Content-Type", ""),
                site=site,
                scripted=scripted,
                fault=fault,
                headers=dict(request.headers),
            )
        )
        return response

    def _grant(
        self, request: web.Request, site: str, form: Mapping[str, str], parsed: ParsedJwt | None
    ) -> dict[str, str]:
        base = f"{request.scheme}://{request.host}"
        audiences: set[str] | frozenset[str] = self.audiences
        if site:
            audiences = self.audiences | {f"{self.url}/{site}", f"{base}/{site}"}
        now = time.time()
        user, client_id = check_assertion(
            form.get("grant_type"),
            parsed,
            apps=self._apps,
            users=self._users,
            audiences=audiences,
            now=now,
        )
        access_token = f"{user.org_id}!{secrets.token_urlsafe(66)}"
        id_url = f"{base}/id/{user.org_id}/{user.user_id}"
        payload: dict[str, str] = {"access_token": access_token}
        if site:
            payload["sfdc_community_url"] = f"{base}/{site}"
            payload["sfdc_community_id"] = self._community_id(site)
        payload.update(
            signature=base64.b64encode(secrets.token_bytes(32)).decode(),
            scope="web openid api full",
            instance_url=self.instance_url,
            id=id_url,
            token_type="Bearer",
            issued_at=str(int(now * 1000)),
        )
        self._sessions[access_token] = Session(user, client_id, id_url, self.clock())
        return payload

    def _community_id(self, site: str) -> str:
        community = self._communities.get(site)
        if community is None:
            community = self._communities[site] = self._ids.new("0DB")
        return community
