"""Validation against the JSON schemas in schemas/ (the single source of truth).

Importing jsonschema costs ~120 ms, five times what the rest of an ADD costs in Python. So a valid document
is recognised by `conforms`, a small checker of the few keywords our schemas use, and jsonschema is imported
only when that checker rejects something: to explain why, and to have the last word. `conforms` is only ever
trusted to say "valid"; tests/unit/test_schema_agreement.py proves on fuzzed documents that it never says
so where jsonschema would not, and `_check_keywords` refuses a schema that uses any other keyword.
"""
import functools
import json
import os
import re

from .errors import InvalidConfig

# The schemas live at the top of the source tree; the one-file build (a zip) carries them as package data.
_HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA_DIR = next((d for d in (os.path.join(_HERE, "schemas"), os.path.join(_HERE, "..", "..", "schemas"))
                   if os.path.isdir(d)), None)  # None: inside dist/route

ANNOTATIONS = {"$schema", "$id", "$comment", "title", "description"}
ASSERTIONS = {"type", "enum", "pattern", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
              "required", "properties", "items", "not", "$ref", "$defs"}


@functools.cache
def load(name):
    if SCHEMA_DIR is None:  # read through the zip importer that loaded this module (pkgutil costs 2% of an ADD)
        schema = json.loads(__loader__.get_data(os.path.join(_HERE, "schemas", name)))
    else:
        with open(os.path.join(SCHEMA_DIR, name), encoding="utf-8") as f:
            schema = json.load(f)
    _check_keywords(schema)
    return schema


def validate(document, name, where):
    """Raise InvalidConfig naming the offending field (e.g. `prevResult.ips[0].address`)."""
    schema = load(name)
    if conforms(schema, document, schema):
        return
    import jsonschema  # only for documents the quick check rejects

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(document))
    if error is not None:
        raise InvalidConfig(f"invalid {field_path(where, error.absolute_path)}", error.message)


def field_path(root, parts):
    """('prevResult', ['ips', 0, 'address']) -> 'prevResult.ips[0].address'."""
    text = root
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "config"


def conforms(schema, instance, root):
    """Whether `instance` is valid against `schema`, for the keywords in ASSERTIONS, as Draft 2020-12 says."""
    if "$ref" in schema and not conforms(_resolve(root, schema["$ref"]), instance, root):
        return False
    if "type" in schema and not _TYPES[schema["type"]](instance):
        return False
    if "enum" in schema and not (isinstance(instance, str) and instance in schema["enum"]):
        return False
    if "not" in schema and conforms(schema["not"], instance, root):
        return False
    if isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0) or len(instance) > schema.get("maxLength", len(instance)):
            return False
        if "pattern" in schema and not _regex(schema["pattern"]).search(instance):
            return False
    elif _is_number(instance):
        if "minimum" in schema and not instance >= schema["minimum"]:
            return False
        if "maximum" in schema and not instance <= schema["maximum"]:
            return False
        if "exclusiveMinimum" in schema and not instance > schema["exclusiveMinimum"]:
            return False
    elif isinstance(instance, dict):
        if any(key not in instance for key in schema.get("required", ())):
            return False
        properties = schema.get("properties", {})
        if not all(conforms(properties[k], v, root) for k, v in instance.items() if k in properties):
            return False
    elif isinstance(instance, list) and "items" in schema:
        return all(conforms(schema["items"], item, root) for item in instance)
    return True


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": _is_number,
    # as jsonschema: 1.0 is an integer, True is not
    "integer": lambda v: _is_number(v) and (isinstance(v, int) or v.is_integer()),
}


@functools.cache
def _regex(pattern):
    return re.compile(pattern)


def _resolve(root, ref):
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported: {ref}")
    target = root
    for part in ref[2:].split("/"):
        target = target[part]
    return target


def _check_keywords(schema):
    """Refuse a schema that uses a keyword `conforms` does not implement, or an enum of non-strings."""
    if isinstance(schema, dict):
        unknown = set(schema) - ANNOTATIONS - ASSERTIONS
        if unknown:
            raise ValueError(f"schema keyword(s) {sorted(unknown)} are not supported by the quick check")
        if "type" in schema and schema["type"] not in _TYPES:
            raise ValueError(f"unsupported type {schema['type']!r}")
        if not all(isinstance(v, str) for v in schema.get("enum", ())):
            raise ValueError("enums must list strings")
        for key in ("items", "not"):
            if key in schema:
                _check_keywords(schema[key])
        for sub in ("properties", "$defs"):
            for value in schema.get(sub, {}).values():
                _check_keywords(value)
