from __future__ import annotations

import pytest

from sfauth import ConfigurationError
from sfauth._config import FlowConfig


def make(**kw: object) -> FlowConfig:
    args: dict[str, object] = {"client_id": "cid", "username": "u@example.com"}
    args.update(kw)
    return FlowConfig.create(**args)  # type: ignore[arg-type]


def test_defaults() -> None:
    c = make()
    assert c.login_url == "https://login.salesforce.com"
    assert c.audience == "https://login.salesforce.com"
    assert c.site == ""
    assert c.token_url == "https://login.salesforce.com/services/oauth2/token"


def test_my_domain_login_keeps_production_audience() -> None:
    c = make(login_url="https://acme.my.salesforce.com/")
    assert c.token_url == "https://acme.my.salesforce.com/services/oauth2/token"
    assert c.audience == "https://login.salesforce.com"


@pytest.mark.parametrize(
    "login_url", ["https://test.salesforce.com", "https://acme--uat.sandbox.my.salesforce.com"]
)
def test_sandbox_hosts_default_to_test_audience(login_url: str) -> None:
    assert make(login_url=login_url).audience == "https://test.salesforce.com"


def test_site_prefix_sets_token_url_and_audience() -> None:
    c = make(login_url="https://acme.my.site.com", site="/customers/")
    assert c.site == "/customers"
    assert c.token_url == "https://acme.my.site.com/customers/services/oauth2/token"
    assert c.audience == "https://acme.my.site.com/customers"


def test_audience_override() -> None:
    c = make(login_url="https://acme.my.salesforce.com", audience="https://acme.my.salesforce.com")
    assert c.audience == "https://acme.my.salesforce.com"


@pytest.mark.parametrize(
    ("kw", "phrase"),
    [
        ({"client_id": ""}, "client_id is empty"),
        ({"client_id": "   "}, "client_id is empty"),
        ({"username": ""}, "username is empty"),
        ({"login_url": "login.salesforce.com"}, "needs a scheme and a host"),
        (
            {"login_url": "https://login.salesforce.com/services/oauth2/token"},
            "no path, query or fragment",
        ),
        ({"login_url": "https://login.salesforce.com?x=1"}, "no path, query or fragment"),
        (
            {"login_url": "http://login.salesforce.com"},
            "uses plain http; Salesforce requires https",
        ),
        ({"login_url": "http://127.0.0.1:8080"}, "pass allow_http_loopback=True"),
        ({"login_url": "ftp://login.salesforce.com"}, "must use https"),
        ({"login_url": "https://user:pw@login.salesforce.com"}, "must not contain credentials"),
        ({"site": "customers"}, "must be a path prefix starting with '/'"),
        ({"audience": "login.salesforce.com"}, "must be a URL with scheme"),
    ],
)
def test_bad_settings(kw: dict[str, object], phrase: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        make(**kw)
    assert phrase in str(info.value)


def test_http_loopback_allowed_when_opted_in() -> None:
    c = make(login_url="http://127.0.0.1:8080", allow_http_loopback=True)
    assert c.token_url == "http://127.0.0.1:8080/services/oauth2/token"
