import pytest
from pydantic import TypeAdapter, ValidationError

from ocrtune_shared.names import AdapterName, AdapterRef, validate_adapter_name


@pytest.mark.parametrize("name", ["invoices", "zh-lines_v2", "a", "model.2026", "0abc"])
def test_safe_slugs_are_accepted(name):
    assert validate_adapter_name(name) == name


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("../etc", "path separators"),
        ("a/b", "path separators"),
        ("a\\b", "path separators"),
        ("a..b", "path separators or '..'"),
        (".hidden", "starting with a letter or digit"),
        ("Upper", "lowercase"),
        ("", "non-empty"),
        ("x" * 64, "1-63 characters"),
        ("sp ace", "lowercase"),
    ],
)
def test_unsafe_names_are_refused_with_a_reason(name, fragment):
    with pytest.raises(ValueError, match=None) as info:
        validate_adapter_name(name)
    assert fragment in str(info.value)


def test_adapter_name_type_validates_in_models():
    with pytest.raises(ValidationError):
        TypeAdapter(AdapterName).validate_python("../x")


def test_adapter_ref_parses_name_and_version():
    assert AdapterRef.parse("invoices") == AdapterRef(name="invoices", version=None)
    assert AdapterRef.parse("invoices@3") == AdapterRef(name="invoices", version=3)
    assert str(AdapterRef.parse("invoices@3")) == "invoices@3"
    for bad in ["invoices@", "invoices@0", "invoices@x", "../a@1"]:
        with pytest.raises(ValueError):
            AdapterRef.parse(bad)


def test_json_schema_pattern_accepts_exactly_the_valid_names() -> None:
    import random
    import re

    from ocrtune_shared.names import NAME_JSON_PATTERN, validate_adapter_name

    pattern = re.compile(NAME_JSON_PATTERN)
    rng = random.Random(0)
    for _ in range(20000):
        name = "".join(rng.choice("ab0._-A/") for _ in range(rng.randint(0, 70)))
        try:
            validate_adapter_name(name)
            valid = True
        except ValueError:
            valid = False
        assert valid == bool(pattern.match(name) and len(name) <= 63), name
