"""Where the projections' views live: the view store, the runner that fills it, replay."""
