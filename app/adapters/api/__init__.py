"""The HTTP API (FastAPI): app factory, auth, problem+json, routers and schemas."""
