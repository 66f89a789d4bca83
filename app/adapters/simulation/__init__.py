"""`iwrs simulate`: whole trials run through the real HTTP API, as its users would."""
