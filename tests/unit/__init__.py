"""Unit tests: pure code and fakes that satisfy the real ports; no service, no process."""
