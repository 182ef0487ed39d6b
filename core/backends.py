"""The store backends by URL scheme, named here rather than imported.

``Store.from_url`` loads the one a URL asks for (as saq's ``Queue.from_url`` does), so the
contract (``store.py``, ``store_admin.py``, ``store_ops.py``) imports no backend (each backend
imports the contract: importing them back would make a circle) and a process that uses files
never loads redis-py's client.
``validate.store_url`` accepts exactly these schemes.
"""

from __future__ import annotations

# scheme -> "module:Class", the module relative to claimroom.core.
BACKENDS = {
    "redis": ".redis.store:RedisStore",
    "rediss": ".redis.store:RedisStore",
    "unix": ".redis.store:RedisStore",
    "redis+sentinel": ".redis.store:RedisStore",
    "redis+cluster": ".redis.store:RedisStore",
    "file": ".file.store:FileStore",
}
