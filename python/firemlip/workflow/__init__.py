"""The run directory: stages in order, each in its own subdirectory with a manifest; resume by skipping."""
