"""Mail at the edge: the only room that opens SMTP and IMAP connections or reads a Maildir."""
