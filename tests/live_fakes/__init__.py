"""Stand-ins for live services used by the live backend's tests (a local HTTP server, collections)."""
