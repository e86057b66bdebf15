"""The JSON files that caches, runs and evaluations leave behind, read with one clear error each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from braintumorseg.errors import InputError


def read_json(path: Path, remedy: str) -> dict[str, Any]:
    """The JSON object in `path`, or an InputError naming the file and `remedy` (what to do)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path} does not exist; {remedy}.") from None
    except (OSError, ValueError) as error:
        raise InputError(f"{path} cannot be read as JSON ({error}); {remedy}.") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} holds a JSON {type(data).__name__}, not an object; {remedy}.")
    return data
