"""Reading a file the user named, with one sentence for each way it can be the wrong file.

A missing path, a folder, an image or an empty file given where a YAML or CSV belongs
should each say what they are, not surface as a decoding error or a traceback.
"""

from __future__ import annotations

from pathlib import Path

from fedrad.common.user_error import UserError


class UnreadableFile(UserError):
    """The file cannot be read as text; the message names it and says why."""


def located(path: Path) -> str:
    """The path as given, and where it points when it is relative."""
    return str(path) if path.is_absolute() else f"{path} (that is, {path.resolve()})"


def read_text(path: Path, what: str) -> str:
    """The text of `what` (e.g. 'study config') at `path`; UnreadableFile says why not."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UnreadableFile(f"there is no {what} {located(path)}") from None
    except IsADirectoryError:
        raise UnreadableFile(f"the {what} {path} is a folder; give the file itself") from None
    except PermissionError:
        raise UnreadableFile(f"the {what} {path} cannot be read: permission denied") from None
    except UnicodeDecodeError:
        raise UnreadableFile(
            f"{path} is not a text file (an image or other binary file?), so not a {what}"
        ) from None
    except OSError as exc:
        raise UnreadableFile(f"the {what} {path} cannot be read: {exc.strerror}") from None
    if not text.strip():
        raise UnreadableFile(f"the {what} {path} is empty")
    return text


def path_problem(exc: OSError) -> str:
    """Why a path could not be read, made or written, in words: a file where a folder (or
    one above it) belongs says so rather than 'File exists'."""
    if isinstance(exc, FileExistsError | NotADirectoryError):
        return "a file is in the way where a folder belongs"
    return exc.strerror or type(exc).__name__
