"""The Redis backend: the store, its Lua scripts (one file per atomic operation), the
coalescer that pipelines concurrent calls, and the whole-board dump for migration."""
