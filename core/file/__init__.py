"""The file backend: one SQLite board in WAL mode for one machine; the store, its
transactions (ops, claim, cascade, admin, retention), the schema, the writer thread and
the whole-board dump for migration."""
