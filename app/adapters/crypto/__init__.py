"""Key material under the keys directory and envelope encryption."""
