"""The ports' implementations: what handlers and the gateway call, backed by the store and views."""
