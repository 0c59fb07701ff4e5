"""For people, not production: the demo, the benchmarks and the simulated Hestia node.

Imported by the command line only; nothing that runs in production imports it."""
