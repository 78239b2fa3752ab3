"""Server-side conversation sessions (``X-Switchyard-Session``)."""

from extensions.sessions.extension import SessionExtension

__all__ = ["SessionExtension"]
