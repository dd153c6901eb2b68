"""The README's code blocks run as written."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import structlog

from .conftest import fake_session_id

README = (Path(__file__).parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.DOTALL)


def block(marker: str) -> str:
    (found,) = [b for b in BLOCKS if marker in b]
    return found


async def test_the_testing_example_passes() -> None:
    namespace: dict[str, object] = {}
    exec(block("def test_my_etl_survives_an_expired_session"), namespace)
    await namespace["test_my_etl_survives_an_expired_session"]()  # type: ignore[operator]


def test_the_logging_configuration_scrubs_and_hides_locals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    buffer = io.StringIO()
    namespace: dict[str, object] = {}
    try:
        exec(block("sfauth.redact_secrets,"), namespace)
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(buffer))
        session_id = fake_session_id()

        def fail(token: str) -> None:
            raise RuntimeError(f"failed with {token}")

        try:
            fail(session_id)
        except RuntimeError:
            structlog.get_logger().exception("boom", authorization=f"Bearer {session_id}")
    finally:
        structlog.reset_defaults()
    output = buffer.getvalue()
    event = json.loads(output)
    assert event["authorization"] == "<redacted>"
    assert session_id.split("!", 1)[1] not in output
    frames = event["exception"][0]["frames"]
    assert frames
    assert all("locals" not in frame for frame in frames)
