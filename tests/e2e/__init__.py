"""End-to-end tests: the whole system as processes, driven over HTTP, killed and restarted."""
