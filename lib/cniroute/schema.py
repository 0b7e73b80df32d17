"""Validation of documents against the JSON schemas in schemas/ (the single source of truth)."""
import functools
import json
import os

from .errors import InvalidConfig

# The schemas live at the top of the source tree; a bundled build carries them inside the package.
_HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA_DIR = next(d for d in (os.path.join(_HERE, "schemas"), os.path.join(_HERE, "..", "..", "schemas"))
                  if os.path.isdir(d))


@functools.cache
def load(name):
    with open(os.path.join(SCHEMA_DIR, name), encoding="utf-8") as f:
        return json.load(f)


def validate(document, name, where):
    """Raise InvalidConfig naming the offending field (e.g. `prevResult.ips[0].address`)."""
    import jsonschema  # deferred: costly to import, and VERSION or a JSON syntax error never need it

    validator = jsonschema.Draft202012Validator(load(name))
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is not None:
        raise InvalidConfig(f"invalid {field_path(where, error.absolute_path)}", error.message)


def field_path(root, parts):
    """('prevResult', ['ips', 0, 'address']) -> 'prevResult.ips[0].address'."""
    text = root
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "config"
