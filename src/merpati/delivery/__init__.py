"""The one path every message takes: recipients resolved, local copies stored, remote queued."""
