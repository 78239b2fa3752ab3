"""Unit tests; upstreams are faked at the transport layer (httpx.MockTransport)."""
