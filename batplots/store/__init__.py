"""Stories and accounts in SQLite or PostgreSQL, with append-only migrations."""
