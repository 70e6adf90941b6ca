"""Shared state for a fleet: PostgreSQL (connection pool, versioned schema migrations) and what
lives in it (the archive index, the configuration documents). Absent from the embedded default."""
