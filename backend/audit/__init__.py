"""The traceability trail: one writer, a SHA-256 hash chain, verification."""
