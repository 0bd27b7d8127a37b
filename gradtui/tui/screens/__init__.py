"""Modal screens: load and save a preset."""
