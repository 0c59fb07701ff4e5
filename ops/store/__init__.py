"""The event store (the truth), its database connections, group commits and tracking positions."""
