"""HTTP handlers: thin, each one decodes, calls the gateway, and encodes."""
