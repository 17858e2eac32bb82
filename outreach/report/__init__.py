"""The report: figures read from the store, and their HTML page."""
