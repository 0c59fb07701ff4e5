"""Running hostwright: the composition root, the command line and settings.

Each part lives in a sub-package that says what it is (store, views, messaging, adapters,
services, runtime, devtools)."""
