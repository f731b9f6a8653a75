"""Pure renderers: typed inputs in, plain text or dicts out. No I/O, no clock."""
