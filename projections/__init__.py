"""Read models built from the event store, each rebuildable from event 0."""
