"""The one kind of error a user's input causes, so every command reports it the same way.

`fedrad` turns a UserError raised anywhere in a command into its message on one line and
exit status 2 (`common/cli_errors.py`); the message is that sentence, naming the file.
"""

from __future__ import annotations


class UserError(ValueError):
    """A file or option the user gave cannot be used; the message says which and why."""
