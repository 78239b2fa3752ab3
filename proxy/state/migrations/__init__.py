"""Alembic's environment and the state store's schema revisions (see ``proxy.state.migrate``)."""
