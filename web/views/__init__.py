"""Website views, one module per area."""
