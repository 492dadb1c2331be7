"""The engine's database: SQLAlchemy tables, sessions, Alembic migrations."""
