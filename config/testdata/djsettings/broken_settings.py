# Fails while imported, like a settings module missing a dependency.
import module_that_does_not_exist  # noqa: F401
