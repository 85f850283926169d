"""The core's one-line errors that several of its modules raise (kept apart so that `hub` and `models` need not
import each other)."""


class ModelError(Exception):
    """A model that cannot be loaded as asked. One line: the model, what is wrong, what is expected."""
