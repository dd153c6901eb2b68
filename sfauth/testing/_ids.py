"""Salesforce-shaped identifiers: 18-character record ids, consumer keys, access tokens."""

from __future__ import annotations

import secrets
import string

__all__ = [
    "BASE62",
    "IdFactory",
    "random_base62",
    "random_consumer_key",
    "to_18",
]

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_SUFFIX_ALPHABET = string.ascii_uppercase + "012345"


def to_18(id15: str) -> str:
    """Append Salesforce's 3-character case-safe checksum to a 15-character id.

    Args:
        id15: A 15-character case-sensitive Salesforce id.

    Returns:
        The 18-character case-insensitive form of the id.

    Raises:
        ValueError: If ``id15`` is not 15 characters long.
    """
    if len(id15) != 15:
        raise ValueError("a 15-character id is required")
    suffix = []
    for chunk in range(3):
        bits = 0
        for position, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix.append(_SUFFIX_ALPHABET[bits])
    return id15 + "".join(suffix)


def random_base62(length: int) -> str:
    """Return ``length`` random base-62 characters.

    Args:
        length: Number of characters.

    Returns:
        A random string over ``[0-9A-Za-z]``.
    """
    return "".join(secrets.choice(BASE62) for _ in range(length))


def random_consumer_key() -> str:
    """Return a random connected-app consumer key shaped like Salesforce's (``3MVG9…``).

    Returns:
        An 85-character consumer key.
    """
    alphabet = BASE62 + "._"
    return "3MVG9" + "".join(secrets.choice(alphabet) for _ in range(80))


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, remainder = divmod(number, 62)
        digits.append(BASE62[remainder])
    text = "".join(reversed(digits)) or "0"
    if len(text) > width:
        raise OverflowError("id counter exhausted")
    return text.rjust(width, "0")


class IdFactory:
    """Deterministic generator of unique 18-character ids for one emulator.

    Ids look like ``001`` + a 3-character pod marker + a 9-character base-62 counter, plus the
    case-safe checksum, so ids of one emulator are unique across all key prefixes.
    """

    def __init__(self, pod: str = "Em0") -> None:
        self._pod = pod
        self._counter = 0

    def new(self, prefix: str) -> str:
        """Return a fresh id with the given 3-character key prefix.

        Args:
            prefix: Key prefix such as ``"001"`` (Account) or ``"00D"`` (Organization).

        Returns:
            A new 18-character id.
        """
        self._counter += 1
        return to_18(prefix + self._pod + _base62(self._counter, 9))
