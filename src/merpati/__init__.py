"""Merpati: an all-in-one mail server (SMTP, submission, queue, IMAP, POP3) in Python."""

__version__ = "0.1.0"
