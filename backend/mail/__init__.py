"""The only package that speaks IMAP and SMTP: connect (TLS, auth modes), fetch, parse, send."""
