"""Integration tests: one real part each (SQLite, PostgreSQL, RabbitMQ, SSH to a simnode)."""
