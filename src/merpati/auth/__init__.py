"""Credentials: argon2id hashes, the one credential check with its throttle, and SASL."""
