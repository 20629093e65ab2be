"""Kubernetes quantities as exact integers (engine/model/quantity.py)."""
import pytest

from gangplace.engine.model.errors import InvalidRequest, InvalidTopology
from gangplace.engine.model.quantity import MAX_QUANTITY, format_cpu, format_memory, parse_quantity


@pytest.mark.parametrize("value, scale, expected", [
    ("500m", 1000, 500), (2, 1000, 2000), ("1.5", 1000, 1500), (0.25, 1000, 250), ("1", 1000, 1000),
    ("2Ti", 1, 2 * 2**40), ("256Gi", 1, 256 * 2**30), ("1.5G", 1, 1_500_000_000), ("128", 1, 128),
    ("1k", 1, 1000), ("1Ki", 1, 1024), ("1e3", 1, 1000), (" 4Mi ", 1, 4 * 2**20), ("+3", 1, 3),
    ("0.1m", 1000, 1), ("1.0001", 1000, 1001), (0, 1, 0),
], ids=lambda v: repr(v))
def test_parses_kubernetes_quantities_exactly_rounding_fractions_up(value, scale, expected):
    assert parse_quantity(value, field="f", scale=scale) == expected


@pytest.mark.parametrize("value", ["", "abc", "1Zi", "-1", -5, "1..2", "m", float("nan"), float("inf"), True,
                                   None, [1], {"a": 1}, "1 Gi Gi", "9" * 30])
def test_rejects_what_is_not_a_non_negative_quantity_naming_the_field(value):
    with pytest.raises(InvalidRequest) as e:
        parse_quantity(value, field="pod_sets[0].cpu", scale=1000)
    assert e.value.field == "pod_sets[0].cpu"
    assert str(e.value).startswith("pod_sets[0].cpu")


def test_error_type_is_chosen_by_the_caller():
    with pytest.raises(InvalidTopology):
        parse_quantity("x", field="nodes[0].memory", error=InvalidTopology)


def test_largest_quantity_is_the_unlimited_sentinel():
    assert parse_quantity(str(MAX_QUANTITY), field="f") == MAX_QUANTITY
    with pytest.raises(InvalidRequest):
        parse_quantity(str(MAX_QUANTITY + 1), field="f")


@pytest.mark.parametrize("millicores, text", [(2000, 2), (500, "500m"), (0, 0), (1500, "1500m")])
def test_cpu_formats_back_to_the_shortest_quantity(millicores, text):
    assert format_cpu(millicores) == text
    assert parse_quantity(text, field="f", scale=1000) == millicores


@pytest.mark.parametrize("num_bytes, text", [(2 * 2**40, "2Ti"), (256 * 2**30, "256Gi"), (1024, "1Ki"),
                                             (1000, 1000), (0, 0), (3 * 2**60, "3Ei")])
def test_memory_formats_back_to_the_largest_exact_binary_suffix(num_bytes, text):
    assert format_memory(num_bytes) == text
    assert parse_quantity(text, field="f") == num_bytes


@pytest.mark.parametrize("value", ["1e999999", "1e1000000", "9" * 60, "1E+99999999999", 1e308, "1e19Ei"],
                         ids=["a million-digit exponent", "an exponent past the decimal context",
                              "sixty nines", "an exponent past any context", "the largest float",
                              "a large exponent with a suffix"])
def test_huge_quantities_are_refused_as_too_large_without_building_the_integer(value):
    with pytest.raises(InvalidRequest, match="too large"):
        parse_quantity(value, field="memory")


def test_a_quantity_string_longer_than_the_limit_is_refused_before_parsing():
    with pytest.raises(InvalidRequest, match="longer than 64 characters") as e:
        parse_quantity("1" + "0" * 200 + "Gi", field="memory")
    assert e.value.field == "memory" and len(str(e.value)) < 200  # the value is not echoed whole


def test_tiny_exponents_round_up_to_one_unit():
    assert parse_quantity("1e-999999", field="cpu", scale=1000) == 1


def test_repeated_strings_give_the_same_answers_and_errors_are_not_remembered():
    """Parsed strings are remembered per scale (the extender reads the same few on every pod): a
    repeat answers the same, the scale is part of the key, and a bad string fails every time with
    the field of that call."""
    assert [parse_quantity("1500m", field="cpu", scale=1000) for _ in range(3)] == [1500] * 3
    assert parse_quantity("2", field="cpu", scale=1000) == 2000 and parse_quantity("2", field="memory") == 2
    for field in ("a", "b"):
        with pytest.raises(InvalidRequest) as e:
            parse_quantity("12 parsecs", field=field)
        assert e.value.field == field
    for _ in range(2):
        with pytest.raises(InvalidRequest, match="not a Kubernetes quantity"):
            parse_quantity("-1", field="cpu")
