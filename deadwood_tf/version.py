"""The package's version, in a module that imports nothing (the report reads it)."""

VERSION = "0.1.0"
