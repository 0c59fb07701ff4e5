"""What several test modules share that is not a fake of one port: harnesses that run hostwright
as processes, simulated nodes and doubles of outside services, and fixtures and builders that
more than one test module uses. No test module imports another test module; they import these."""
