"""The emulator's token endpoint with malformed input: Salesforce's 400 bodies, never a 500 (#19).

Also the ``exp`` forms Salesforce accepts (#20). Pure parsing functions are tested without
sockets; everything else goes to a running emulator over a real socket.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sfauth.testing import Emulator, EmulatorCredentials
from sfauth.testing._keys import parse_jwt
from sfauth.testing._token import exp_seconds, parse_form

from .test_emulator import default_claims

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_PATH = "/services/oauth2/token"
FORM = "application/x-www-form-urlencoded"
INVALID_ASSERTION = {"error": "invalid_grant", "error_description": "invalid assertion"}
UNSUPPORTED_GRANT = {
    "error": "unsupported_grant_type",
    "error_description": "grant type not supported",
}
EXPIRED = {"error": "invalid_grant", "error_description": "expired authorization code"}
RS256 = b'{"alg":"RS256"}'


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(header: bytes, claims: bytes, creds: EmulatorCredentials) -> str:
    """A compact JWS of exactly these header and claims bytes, RS256-signed with the app's key."""
    key = serialization.load_pem_private_key(creds.private_key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signing_input = f"{b64url(header)}.{b64url(claims)}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def claims_json(creds: EmulatorCredentials, **overrides: object) -> bytes:
    return json.dumps({**default_claims(creds), **overrides}).encode()


def with_huge_number(creds: EmulatorCredentials) -> bytes:
    """Claims holding a 5000-digit integer (more than Python's int parser accepts by default)."""
    return claims_json(creds)[:-1] + b', "n": ' + b"9" * 5000 + b"}"


def standard_base64_header(creds: EmulatorCredentials) -> str:
    """A token whose header segment uses the standard alphabet (``/``), not base64url."""
    header = b'{"alg":"RS256","k":"??"}'
    segment = base64.b64encode(header).decode().rstrip("=")
    assert "/" in segment
    return segment + "." + sign(header, claims_json(creds), creds).split(".", 1)[1]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession, emulator: Emulator, **kwargs: Any
) -> tuple[int, Any, str]:
    async with http.post(emulator.url + TOKEN_PATH, **kwargs) as response:
        return (
            response.status,
            await response.json(content_type=None),
            response.headers["Content-Type"],
        )


async def post_assertion(
    http: aiohttp.ClientSession, emulator: Emulator, assertion: str
) -> tuple[int, Any]:
    status, payload, _ = await post(
        http, emulator, data={"grant_type": JWT_BEARER, "assertion": assertion}
    )
    return status, payload


# ---------------------------------------------------------------------------------------------
# malformed assertions, each otherwise valid (right iss/sub/aud/exp, signed with the app's key)

MALFORMED: list[tuple[str, Any]] = [
    ("kid a number", lambda c: sign(b'{"alg":"RS256","kid":5}', claims_json(c), c)),
    ("kid null", lambda c: sign(b'{"alg":"RS256","kid":null}', claims_json(c), c)),
    ("kid an object", lambda c: sign(b'{"alg":"RS256","kid":{"a":1}}', claims_json(c), c)),
    ("typ a number", lambda c: sign(b'{"alg":"RS256","typ":1}', claims_json(c), c)),
    ("cty a list", lambda c: sign(b'{"alg":"RS256","cty":["JWT"]}', claims_json(c), c)),
    ("crit not a list", lambda c: sign(b'{"alg":"RS256","crit":5}', claims_json(c), c)),
    ("crit unknown", lambda c: sign(b'{"alg":"RS256","crit":["x"],"x":1}', claims_json(c), c)),
    ("alg a number", lambda c: sign(b'{"alg":256}', claims_json(c), c)),
    ("alg a list", lambda c: sign(b'{"alg":["RS256"]}', claims_json(c), c)),
    ("alg missing", lambda c: sign(b'{"typ":"JWT"}', claims_json(c), c)),
    ("header a list", lambda c: sign(b'["RS256"]', claims_json(c), c)),
    ("header a string", lambda c: sign(b'"RS256"', claims_json(c), c)),
    ("header null", lambda c: sign(b"null", claims_json(c), c)),
    ("header not JSON", lambda c: sign(b"{alg: RS256}", claims_json(c), c)),
    ("header not UTF-8", lambda c: sign(b'{"alg":"RS256","x":"\xff"}', claims_json(c), c)),
    ("header UTF-16", lambda c: sign(RS256.decode().encode("utf-16"), claims_json(c), c)),
    ("claims a list", lambda c: sign(RS256, b'["iss"]', c)),
    ("claims a number", lambda c: sign(RS256, b"42", c)),
    ("claims empty", lambda c: sign(RS256, b"", c)),
    ("claims not UTF-8", lambda c: sign(RS256, claims_json(c)[:-1] + b',"x":"\xfe"}', c)),
    ("claims with NaN", lambda c: sign(RS256, claims_json(c, exp=math.nan), c)),
    ("claims with Infinity", lambda c: sign(RS256, claims_json(c, exp=math.inf), c)),
    ("claims with a 5000-digit number", lambda c: sign(RS256, with_huge_number(c), c)),
    ("claims nested 100000 deep", lambda c: sign(RS256, b"[" * 100_000 + b"]" * 100_000, c)),
    ("exp beyond a Java long", lambda c: sign(RS256, claims_json(c, exp=2**63), c)),
    ("exp string beyond a long", lambda c: sign(RS256, claims_json(c, exp="9" * 19), c)),
    ("exp 20-digit string", lambda c: sign(RS256, claims_json(c, exp="1" + "0" * 19), c)),
    ("exp float 1e300", lambda c: sign(RS256, claims_json(c, exp=1e300), c)),
    ("base64 garbage header", lambda c: "!!!!." + sign(RS256, claims_json(c), c).split(".", 1)[1]),
    ("standard base64 alphabet", standard_base64_header),
    ("padding too long", lambda c: sign(RS256, claims_json(c), c).replace(".", "===.", 1)),
    (
        "one base64 char left over",
        lambda c: "A." + sign(RS256, claims_json(c), c).split(".", 1)[1],
    ),
    ("two segments", lambda c: sign(RS256, claims_json(c), c).rsplit(".", 1)[0]),
    ("four segments", lambda c: sign(RS256, claims_json(c), c) + ".AAAA"),
    (
        "duplicated claims segment",
        lambda c: (lambda h, p, s: f"{h}.{p}.{p}.{s}")(*sign(RS256, claims_json(c), c).split(".")),
    ),
    ("five segments (JWE)", lambda c: "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d"),
    ("signature not base64url", lambda c: sign(RS256, claims_json(c), c) + "*"),
    ("empty segments", lambda c: ".."),
    ("a single dot", lambda c: "."),
    ("no dots", lambda c: "eyJhbGciOiJSUzI1NiJ9"),
    ("whitespace", lambda c: " " + sign(RS256, claims_json(c), c)),
    ("non-ASCII", lambda c: sign(RS256, claims_json(c), c) + "é"),
    ("NUL bytes", lambda c: "\x00.\x00.\x00"),
]


@pytest.mark.parametrize("build", [pytest.param(b, id=name) for name, b in MALFORMED])
async def test_malformed_assertion_is_an_invalid_assertion_not_a_500(
    emulator: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession, build: Any
) -> None:
    status, payload = await post_assertion(http, emulator, build(creds))
    assert (status, payload) == (400, INVALID_ASSERTION)
    assert emulator.counters == {("token", 400): 1}
    assert emulator.token_requests[0].error == "invalid_grant"
    assert emulator.active_sessions == 0


async def test_rejected_malformed_header_is_still_recorded(
    emulator: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    assertion = sign(b'{"alg":"RS256","kid":5}', claims_json(creds, exp=1), creds)
    assert (await post_assertion(http, emulator, assertion))[0] == 400
    record = emulator.token_requests[0]
    assert record.header == {"alg": "RS256", "kid": 5}
    assert record.claims == {
        "iss": creds.client_id,
        "sub": creds.username,
        "aud": creds.audience,
        "exp": 1,
    }


# ---------------------------------------------------------------------------------------------
# malformed bodies


def valid_assertion(creds: EmulatorCredentials) -> str:
    return sign(b'{"alg":"RS256","typ":"JWT"}', claims_json(creds), creds)


def multipart(*parts: bytes, boundary: bytes = b"x") -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return body + b"--" + boundary + b"--\r\n"


def text_part(name: str, value: bytes, *headers: bytes) -> bytes:
    lines = [b'Content-Disposition: form-data; name="' + name.encode() + b'"', *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + value


BODIES: list[tuple[str, Any, dict[str, str], dict[str, str]]] = [
    (
        "assertion with non-UTF-8 bytes",
        lambda c: f"grant_type={JWT_BEARER}&assertion=".encode() + b"\xff\xfe" + c.encode(),
        {"Content-Type": FORM},
        INVALID_ASSERTION,
    ),
    (
        "grant_type with non-UTF-8 bytes",
        lambda c: b"grant_type=\xff&assertion=" + c.encode(),
        {"Content-Type": FORM},
        UNSUPPORTED_GRANT,
    ),
    (
        "percent-encoded non-UTF-8 assertion",
        lambda c: f"grant_type={JWT_BEARER}&assertion=%FF{c}".encode(),
        {"Content-Type": FORM},
        INVALID_ASSERTION,
    ),
    ("random bytes", lambda c: bytes(range(256)), {"Content-Type": FORM}, UNSUPPORTED_GRANT),
    ("empty body", lambda c: b"", {"Content-Type": FORM}, UNSUPPORTED_GRANT),
    (
        "assertion missing",
        lambda c: f"grant_type={JWT_BEARER}".encode(),
        {"Content-Type": FORM},
        INVALID_ASSERTION,
    ),
    (
        "assertion empty",
        lambda c: f"grant_type={JWT_BEARER}&assertion=".encode(),
        {"Content-Type": FORM},
        INVALID_ASSERTION,
    ),
    (
        "junk first, valid assertion second (the first value wins)",
        lambda c: f"grant_type={JWT_BEARER}&assertion=junk&assertion={c}".encode(),
        {"Content-Type": FORM},
        INVALID_ASSERTION,
    ),
    (
        "gzip Content-Encoding on a body that is not gzip",
        lambda c: f"grant_type={JWT_BEARER}&assertion={c}".encode(),
        {"Content-Type": FORM, "Content-Encoding": "gzip"},
        UNSUPPORTED_GRANT,
    ),
    (
        "multipart without a boundary",
        lambda c: multipart(text_part("grant_type", JWT_BEARER.encode())),
        {"Content-Type": "multipart/form-data"},
        UNSUPPORTED_GRANT,
    ),
    (
        "multipart with an unknown Content-Transfer-Encoding",
        lambda c: multipart(
            text_part("grant_type", JWT_BEARER.encode(), b"Content-Transfer-Encoding: bogus")
        ),
        {"Content-Type": "multipart/form-data; boundary=x"},
        UNSUPPORTED_GRANT,
    ),
    (
        "multipart with a broken part header",
        lambda c: multipart(b"not a header line\r\n\r\nvalue"),
        {"Content-Type": "multipart/form-data; boundary=x"},
        UNSUPPORTED_GRANT,
    ),
    (
        "multipart with an unknown charset",
        lambda c: multipart(
            text_part("grant_type", JWT_BEARER.encode(), b"Content-Type: text/plain; charset=x1")
        ),
        {"Content-Type": "multipart/form-data; boundary=x"},
        UNSUPPORTED_GRANT,
    ),
    (
        "multipart with a non-UTF-8 text part",
        lambda c: multipart(text_part("grant_type", b"\xff")),
        {"Content-Type": "multipart/form-data; boundary=x"},
        UNSUPPORTED_GRANT,
    ),
    (
        "multipart cut short",
        lambda c: multipart(text_part("grant_type", JWT_BEARER.encode()))[:-10],
        {"Content-Type": "multipart/form-data; boundary=x"},
        UNSUPPORTED_GRANT,
    ),
    (
        "JSON body",
        lambda c: json.dumps({"grant_type": JWT_BEARER, "assertion": c}).encode(),
        {"Content-Type": "application/json"},
        UNSUPPORTED_GRANT,
    ),
]


@pytest.mark.parametrize(
    ("build", "headers", "expected"),
    [pytest.param(b, h, e, id=name) for name, b, h, e in BODIES],
)
async def test_malformed_body_gets_salesforce_400(
    emulator: Emulator,
    creds: EmulatorCredentials,
    build: Any,
    headers: dict[str, str],
    expected: dict[str, str],
) -> None:
    async with aiohttp.ClientSession() as http:  # gzip garbage makes aiohttp close the socket
        status, payload, content_type = await post(
            http, emulator, data=build(valid_assertion(creds)), headers=headers
        )
    assert (status, payload) == (400, expected)
    assert content_type == "application/json;charset=UTF-8"
    assert emulator.counters == {("token", 400): 1}
    assert emulator.active_sessions == 0


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        pytest.param(
            lambda c: f"grant_type={JWT_BEARER}&assertion={c}", {"Content-Type": FORM}, id="form"
        ),
        pytest.param(
            lambda c: f"grant_type={JWT_BEARER}&assertion={c}\r\n",
            {"Content-Type": FORM},
            id="trailing newline (curl -d @file)",
        ),
        pytest.param(
            lambda c: f"assertion={c}&grant_type={JWT_BEARER}&assertion=junk",
            {"Content-Type": FORM},
            id="repeated field: the first value wins",
        ),
        pytest.param(
            lambda c: f"grant_type={JWT_BEARER}&assertion={c}",
            {"Content-Type": FORM + "; charset=no-such-charset"},
            id="unknown charset (the body is read as UTF-8)",
        ),
        pytest.param(
            lambda c: f"grant_type={JWT_BEARER}&assertion={c}",
            {"Content-Type": FORM + "; charset=ISO-8859-1"},
            id="latin-1 charset",
        ),
        pytest.param(
            lambda c: gzip.compress(f"grant_type={JWT_BEARER}&assertion={c}".encode()),
            {"Content-Type": FORM, "Content-Encoding": "gzip"},
            id="gzip",
        ),
        pytest.param(
            lambda c: multipart(
                text_part("grant_type", JWT_BEARER.encode()), text_part("assertion", c.encode())
            ),
            {"Content-Type": "multipart/form-data; boundary=x"},
            id="multipart (curl -F)",
        ),
    ],
)
async def test_well_formed_bodies_still_log_in(
    emulator: Emulator,
    creds: EmulatorCredentials,
    http: aiohttp.ClientSession,
    body: Any,
    headers: dict[str, str],
) -> None:
    assertion = valid_assertion(creds)
    status, payload, _ = await post(http, emulator, data=body(assertion), headers=headers)
    assert status == 200, payload
    assert payload["token_type"] == "Bearer"
    assert emulator.token_requests[0].form == {"grant_type": JWT_BEARER, "assertion": assertion}


# ---------------------------------------------------------------------------------------------
# exp as Salesforce reads it (#20)


EXP_SECONDS: list[tuple[str, object, float | None]] = [
    ("int", 1700000000, 1700000000.0),
    ("float", 1700000000.5, 1700000000.5),
    ("digits", "1700000180", 1700000180.0),
    ("digits with leading zeros", "0001700000180", 1700000180.0),
    ("milliseconds (Salesforce CLI)", 1700000000300, 1700000000300.0),
    ("largest long as digits", "9223372036854775807", 9223372036854775807.0),
    ("largest long", 2**63 - 1, 9223372036854775807.0),
    ("smallest long", -(2**63), -9223372036854775808.0),
    ("negative", -5, -5.0),
    ("zero", 0, 0.0),
    ("zero as digits", "0", 0.0),
    ("null", None, None),
    ("true", True, None),
    ("false", False, None),
    ("empty string", "", None),
    ("word", "soon", None),
    ("decimal string", "1700000180.0", None),
    ("exponent string", "1.7e9", None),
    ("negative string", "-5", None),
    ("leading space", " 1700000180", None),
    ("trailing newline", "1700000180\n", None),
    ("non-ASCII digits", "\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660", None),
    ("digits beyond a long", "9223372036854775808", None),
    ("20 digits", "1" + "0" * 19, None),
    ("int beyond a long", 2**63, None),
    ("int below a long", -(2**63) - 1, None),
    ("NaN", math.nan, None),
    ("infinity", math.inf, None),
    ("minus infinity", -math.inf, None),
    ("float beyond a long", 9.3e18, None),
    ("list", [1700000000], None),
    ("object", {"exp": 1700000000}, None),
]


@pytest.mark.parametrize(
    ("exp", "expected"), [pytest.param(e, x, id=name) for name, e, x in EXP_SECONDS]
)
def test_exp_seconds(exp: object, expected: float | None) -> None:
    assert exp_seconds(exp) == expected


EXP_ACCEPTED: list[tuple[str, Any]] = [
    ("numeric string (simple-salesforce)", lambda now: f"{now + 180:.0f}"),
    ("float", lambda now: now + 60.5),
    ("milliseconds (Salesforce CLI)", lambda now: int(now * 1000) + 300),
    ("an hour ahead", lambda now: int(now) + 3600),
    ("a year ahead", lambda now: int(now) + 365 * 86400),
    ("largest Java long", lambda now: 2**63 - 1),
    ("largest Java long as a string", lambda now: str(2**63 - 1)),
]


@pytest.mark.parametrize("exp", [pytest.param(e, id=name) for name, e in EXP_ACCEPTED])
async def test_exp_forms_salesforce_accepts(
    emulator: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession, exp: Any
) -> None:
    value = exp(time.time())
    status, payload = await post_assertion(
        http, emulator, sign(RS256, claims_json(creds, exp=value), creds)
    )
    assert status == 200, payload
    assert emulator.token_requests[0].claims["exp"] == value
    assert emulator.active_sessions == 1


EXP_EXPIRED: list[tuple[str, Any]] = [
    ("numeric string", lambda now: f"{now - 5:.0f}"),
    ("float", lambda now: now - 0.5),
    ("zero", lambda now: 0),
    ("negative", lambda now: -1),
    ("smallest Java long", lambda now: -(2**63)),
]


@pytest.mark.parametrize("exp", [pytest.param(e, id=name) for name, e in EXP_EXPIRED])
async def test_exp_in_the_past_is_expired_in_any_form(
    emulator: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession, exp: Any
) -> None:
    assertion = sign(RS256, claims_json(creds, exp=exp(time.time())), creds)
    assert await post_assertion(http, emulator, assertion) == (400, EXPIRED)


async def test_typ_kid_and_extra_claims_are_accepted(
    emulator: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    header = b'{"alg":"RS256","typ":"JWT","kid":"sfauth-cert-1","x-custom":[1]}'
    now = int(time.time())
    claims = claims_json(
        creds, iat=now, nbf=now - 10, jti="4f1c2d", scope=["api"], custom={"nested": None}
    )
    status, payload = await post_assertion(http, emulator, sign(header, claims, creds))
    assert status == 200, payload
    record = emulator.token_requests[0]
    assert record.header == {
        "alg": "RS256",
        "typ": "JWT",
        "kid": "sfauth-cert-1",
        "x-custom": [1],
    }
    assert record.claims["jti"] == "4f1c2d"


async def test_padded_base64url_segments_are_accepted(
    emulator: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    header, claims, signature = sign(RS256, claims_json(creds), creds).split(".")
    padded = ".".join(s + "=" * (-len(s) % 4) for s in (header, claims, signature))
    assert padded.count("=") > 0
    status, payload = await post_assertion(http, emulator, padded)
    assert status == 200, payload


# ---------------------------------------------------------------------------------------------
# the pure parsers


def test_parse_jwt_keeps_what_decoded_and_marks_it_invalid() -> None:
    claims = b'{"iss":"3MVG9x","exp":"soon"}'
    kid_7 = b'{"alg":"RS256","kid":7}'
    parsed = parse_jwt(f"{b64url(kid_7)}.{b64url(claims)}.AAAA")
    assert (parsed.valid, parsed.header, parsed.claims) == (
        False,
        {"alg": "RS256", "kid": 7},
        {"iss": "3MVG9x", "exp": "soon"},
    )
    parsed = parse_jwt(f"{b64url(RS256)}.{b64url(b'[1]')}.AAAA")
    assert (parsed.valid, parsed.header, parsed.claims) == (False, {"alg": "RS256"}, {})
    parsed = parse_jwt(f"{b64url(RS256)}.{b64url(claims)}.AAAA")
    assert (parsed.valid, parsed.header, parsed.claims) == (
        True,
        {"alg": "RS256"},
        {"iss": "3MVG9x", "exp": "soon"},
    )
    parsed = parse_jwt(f"{b64url(RS256)}.{b64url(claims)}")
    assert (parsed.valid, parsed.header, parsed.claims) == (False, {}, {})


def test_parse_form() -> None:
    assert parse_form(b"grant_type=a+b&assertion=x%2Ey&assertion=z&empty=\n") == {
        "grant_type": "a b",
        "assertion": "x.y",
        "empty": "",
    }
    assert parse_form(b"a=\xff&\xfe=%FF") == {"a": "\ufffd", "\ufffd": "\ufffd"}
    assert parse_form(b"") == {}
    assert parse_form(b"&&=&novalue") == {"": "", "novalue": ""}
