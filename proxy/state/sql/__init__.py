"""The repositories on SQLAlchemy Core, one module per resource; both engines share them."""
