"""schema.conforms (the quick check that spares importing jsonschema) agrees with jsonschema exactly.

The plugin trusts `conforms` only when it says "valid", so the property that matters is that it never says
so where jsonschema would not; these tests demand full agreement on fuzzed documents, which is stronger.
"""
import copy

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz import json_value, mutated_config  # noqa: F401  (also loads the hypothesis profile)

from cniroute import schema

SCHEMAS = ["config.json", "result-0.2.0.json", "result-0.4.0.json", "result-1.0.0.json"]
VALIDATORS = {name: jsonschema.Draft202012Validator(schema.load(name)) for name in SCHEMAS}


def agree(name, document):
    root = schema.load(name)
    assert schema.conforms(root, document, root) == VALIDATORS[name].is_valid(document), (name, document)


@given(document=mutated_config())
def test_agreement_on_mutated_configs(document):
    agree("config.json", document)
    for name in SCHEMAS[1:]:
        agree(name, document.get("prevResult"))


@given(document=json_value, name=st.sampled_from(SCHEMAS))
def test_agreement_on_arbitrary_json(document, name):
    agree(name, document)


EDGES = [
    ("config.json", {"cniVersion": "1.0.0", "name": "n", "type": "t", "master": "eno1\n"}),
    ("config.json", {"cniVersion": "1.0.0", "name": "n\n", "type": "t"}),
    ("config.json", {"cniVersion": "1.0.0", "name": "n", "type": "t", "logMaxBytes": 4096.0}),
    ("config.json", {"cniVersion": "1.0.0", "name": "n", "type": "t", "logMaxBytes": True}),
    ("config.json", {"cniVersion": "1.0.0", "name": "n", "type": "t", "ipTimeoutSeconds": 0}),
    ("config.json", {"cniVersion": "1.0.0", "name": "n", "type": "t", "ipTimeoutSeconds": float("inf")}),
    ("config.json", {"cniVersion": "1.0.0", "name": "n", "type": "t", "bridge": ".."}),
    ("config.json", {"cniVersion": "1.0.0", "name": "n", "type": ""}),
    ("result-1.0.0.json", {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/8", "interface": 0.0}]}),
    ("result-1.0.0.json", {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/8", "interface": -1}]}),
    ("result-0.4.0.json", {"cniVersion": "0.4.0", "ips": [{"address": "10.0.0.1/8", "version": 4}]}),
]


@pytest.mark.parametrize("name, document", EDGES)
def test_agreement_on_edges(name, document):
    agree(name, copy.deepcopy(document))


def test_every_schema_uses_only_supported_keywords():
    for name in SCHEMAS:
        schema.load.cache_clear()
        schema.load(name)  # raises on an unsupported keyword


def test_an_unsupported_keyword_is_refused():
    with pytest.raises(ValueError, match="additionalProperties"):
        schema._check_keywords({"type": "object", "additionalProperties": False})
