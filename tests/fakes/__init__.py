"""In-memory fakes of hostwright's ports, one module per port, shared by the tests.

Each module assigns an instance to a variable annotated with the real Protocol, so that when a
port changes, ``mypy tests/fakes`` fails on the fake instead of a test silently faking the past.
"""
