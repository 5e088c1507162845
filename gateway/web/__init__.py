"""The HTTP edge: aiohttp app, handlers, body parsing, problem+json errors."""
