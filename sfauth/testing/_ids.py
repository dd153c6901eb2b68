"""Salesforce-shaped identifiers: 18-character record ids, consumer keys, access tokens."""

from __future__ import annotations

import secrets
import string

__all__ = [
    "BASE62",
    "IdFactory",
    "canonical_id",
    "is_valid_id",
    "random_base62",
    "random_consumer_key",
    "to_18",
]

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_SUFFIX_ALPHABET = string.ascii_uppercase + "012345"
_BASE62_SET = frozenset(BASE62)


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


def canonical_id(value: str) -> str | None:
    """Return the canonical 18-character form of a Salesforce id, or ``None`` if malformed.

    A 15-character id is case-sensitive and gets its checksum. An 18-character id is
    case-insensitive, as Salesforce treats it: the 3-character checksum says which of the first
    15 characters are upper-case, so ``001em0000000005iaa`` and ``001Em0000000005IAA`` are the
    same id.

    Args:
        value: The candidate id.
    """
    if len(value) not in (15, 18) or any(c not in _BASE62_SET for c in value):
        return None
    if len(value) == 15:
        return to_18(value)
    restored = []
    for chunk, flag in enumerate(value[15:].upper()):
        bits = _SUFFIX_ALPHABET.find(flag)
        if bits < 0:
            return None
        for position, char in enumerate(value[chunk * 5 : chunk * 5 + 5]):
            if bits & (1 << position):
                if not char.isalpha():
                    return None
                restored.append(char.upper())
            else:
                restored.append(char.lower() if char.isalpha() else char)
    return to_18("".join(restored))


def is_valid_id(value: str) -> bool:
    """Return whether ``value`` is a well-formed Salesforce id.

    A well-formed id is 15 base-62 characters, or 18 whose last 3 are the case-safe checksum of
    the first 15 (any casing of an 18-character id is the same id, see :func:`canonical_id`).

    Args:
        value: The candidate id.
    """
    return canonical_id(value) is not None


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
