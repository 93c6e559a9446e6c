"""Inference backends: each runs a network on a prepared input tensor and returns its
named outputs. Pre- and post-processing stay in the C++ core whatever the backend."""

from picoface.backends.base import Backend, open_backend

__all__ = ["Backend", "open_backend"]
