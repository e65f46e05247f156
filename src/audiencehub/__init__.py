"""audiencehub: a self-hostable audience platform with an AEP-compatible API."""

__version__ = "0.1.0"
