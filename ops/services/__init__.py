"""One module per long-running part: pipeline, role handler, tickets, scheduler."""
