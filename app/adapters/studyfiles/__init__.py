"""Study definition files (TOML) -> validated pydantic documents -> domain `Study`."""
