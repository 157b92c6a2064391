"""The HTTP API: the app factory, dependencies, routes per noun, schemas and the WebSocket hub."""
