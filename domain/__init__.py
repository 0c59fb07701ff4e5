"""The hostwright domain: aggregates, events, commands and policies. Pure: no I/O, no clock reads."""
