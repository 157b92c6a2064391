"""Routers, one module per noun; :mod:`kai.api.app` includes each of them explicitly."""
