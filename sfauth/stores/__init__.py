"""Where sessions share their token: the ``TokenStore`` protocol and its backends.

``MemoryTokenStore`` shares a token among the sessions of one process; ``RedisTokenStore``
(install the ``redis`` extra) among processes on many hosts, with a Redis lock so that one
process refreshes while the others wait for its token.
"""

from ._base import TokenStore
from ._memory import MemoryTokenStore
from ._redis import ENCRYPTION_KEY_ENV, RedisTokenStore

__all__ = ["ENCRYPTION_KEY_ENV", "MemoryTokenStore", "RedisTokenStore", "TokenStore"]
