"""Services that react to messages: the pipeline and the role handlers (later issues)."""
