"""Where the SOQL grammar's built tables are cached: a directory only this user can write."""

from __future__ import annotations

import os
from pathlib import Path

import lark
import pytest

from sfauth.testing import _soql


def test_the_cache_lives_in_a_private_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = _soql._cache_file()
    assert isinstance(path, str)
    assert Path(path).parent == tmp_path / "sfauth"
    assert Path(path).name.startswith(f"soql-grammar-lark{lark.__version__}-py")
    assert (tmp_path / "sfauth").stat().st_mode & 0o777 == 0o700


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_no_cache_in_a_directory_others_can_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "sfauth"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # another user could plant a pickle here
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _soql._cache_file() is False


def test_no_cache_where_nothing_can_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # a file, not a directory
    assert _soql._cache_file() is False


def test_a_corrupt_cache_file_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = _soql._cache_file()
    assert isinstance(path, str)
    Path(path).write_bytes(b"not a pickle")
    _soql._parser.cache_clear()
    try:
        assert _soql._parser().parse("SELECT Id FROM Account") is not None
        assert Path(path).read_bytes() != b"not a pickle"
    finally:
        _soql._parser.cache_clear()
