"""Process plumbing: which parts a process runs, its event loop, the gateway's sockets, waits."""
