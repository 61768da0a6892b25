"""The `s3agent` command line: what a user types (runs flows, single stages, config and store checks)."""
