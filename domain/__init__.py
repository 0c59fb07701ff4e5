"""The hostwright domain: aggregates, events, commands, policies. Pure: no I/O, no clock."""
