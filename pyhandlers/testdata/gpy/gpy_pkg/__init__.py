"""A package, to check that the embedded importer finds packages."""
