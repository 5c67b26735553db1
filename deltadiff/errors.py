"""Exceptions raised by deltadiff; every message is one line that says why."""


class DiffError(ValueError):
    """Base class of every deltadiff error."""


class ExtractError(DiffError):
    """The text holds no usable diff or code."""


class ApplyError(DiffError):
    """The diff cannot be applied safely to the base code."""
