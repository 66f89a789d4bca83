"""Persistence: engine, ORM rows, repositories, the unit of work."""
