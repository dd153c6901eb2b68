"""The curated surface: a sorted ``__all__`` and a docstring on every public name."""

from __future__ import annotations

import inspect

import pytest

import sfauth
import sfauth.testing


@pytest.mark.parametrize("module", [sfauth, sfauth.testing])
def test_all_is_sorted_and_complete(module: object) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    # isort-style, as ruff's RUF022 keeps it: CONSTANTS, then Classes, then functions.
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[:1].isupper(), n))
    public = {
        n
        for n in dir(module)
        if not n.startswith("_") and not inspect.ismodule(getattr(module, n))
    }
    assert public - {"annotations"} <= set(names) | {"exceptions"}


@pytest.mark.parametrize("module", [sfauth, sfauth.testing])
def test_every_public_name_has_a_docstring(module: object) -> None:
    for name in module.__all__:  # type: ignore[attr-defined]
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), name
            for attr, member in vars(obj).items() if inspect.isclass(obj) else []:
                if attr.startswith("_") and attr != "__call__":
                    continue
                if inspect.isfunction(member) or isinstance(member, property):
                    assert inspect.getdoc(member), f"{name}.{attr}"


def test_exceptions_tree() -> None:
    assert issubclass(sfauth.ConfigurationError, ValueError)
    assert issubclass(sfauth.CrossOriginError, ValueError)
    for cls in (
        sfauth.InvalidGrantError,
        sfauth.InvalidClientError,
        sfauth.UnsupportedGrantTypeError,
        sfauth.TransientTokenError,
        sfauth.TokenResponseError,
    ):
        assert issubclass(cls, sfauth.TokenEndpointError)
    for cls in (sfauth.InvalidSessionError, sfauth.RestApiNotAllowedError):
        assert issubclass(cls, sfauth.SessionError)
    assert sfauth.TransientTokenError.retryable is True
    assert sfauth.InvalidGrantError.retryable is False
