"""Running hostwright: settings, composition root, storage, transports, CLI, simulated nodes."""
