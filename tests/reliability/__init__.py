"""Live reliability tier (issue 16): soak, interrupts and routes on the shared test server."""
