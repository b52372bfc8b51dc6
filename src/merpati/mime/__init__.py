"""Message parsing done once at delivery: MIME tree with byte offsets, ENVELOPE, headers."""
