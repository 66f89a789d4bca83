"""Use cases: one function each, run inside a unit of work. Pure: ports only, no I/O."""
