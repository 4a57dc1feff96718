"""The thin command-line layer: parse, call the engine, report."""
