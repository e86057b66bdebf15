"""Exceptions the engine raises for problems a user can fix, and for cancellation."""


class InputError(Exception):
    """A problem with what the user gave (files, options, weights): the message says what to do."""


class Cancelled(Exception):
    """The run was cancelled by the user; nothing was written."""
