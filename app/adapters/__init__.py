"""Adapters: the HTTP API, the database, the keys, the command line, the study files."""
