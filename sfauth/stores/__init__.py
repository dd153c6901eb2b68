"""Where sessions share their token: the ``TokenStore`` protocol and its backends.

``MemoryTokenStore`` shares a token among the sessions of one process; ``RedisTokenStore``
(install the ``redis`` extra) among processes on many hosts, with a Redis lock so that one
process refreshes while the others wait for its token. Both also keep what a fleet shares
besides the token (``FleetStore``): the refusal memory and the per-user login count.
"""

from .._fleet import FleetStore, Refusal
from ._base import TokenStore
from ._memory import MemoryTokenStore
from ._redis import ENCRYPTION_KEY_ENV, RedisTokenStore

__all__ = [
    "ENCRYPTION_KEY_ENV",
    "FleetStore",
    "MemoryTokenStore",
    "RedisTokenStore",
    "Refusal",
    "TokenStore",
]
