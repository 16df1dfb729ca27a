"""Mail in: the IDLE selector loop, per-folder sync state, leases, and outbox writes."""
