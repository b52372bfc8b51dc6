"""Start-up, the listener registry, connections, signals, and the admin HTTP listener."""
