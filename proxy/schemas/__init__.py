"""Wire types, one module per resource."""
