"""A package whose submodule a handler path can name by mistake."""
