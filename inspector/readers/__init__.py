"""One reader per model format; each returns a :class:`inspector.records.ModelIndex`."""
