"""The @flow decorator."""

from __future__ import annotations

from pushpool import flow


def test_decorated_function_still_runs_and_keeps_metadata():
    @flow(name="adder", retries=2)
    def add(a: int, b: int = 1) -> int:
        """Add numbers."""
        return a + b

    assert add(1, 2) == 3
    assert add.name == "adder" and add.retries == 2 and add.description == "Add numbers."


def test_parameter_schema_from_signature():
    @flow
    def report(customer_id: int, region: str = "eu", dry_run: bool = False):
        return None

    schema = report.parameter_schema()
    assert report.name == "report"
    assert schema["required"] == ["customer_id"]
    assert schema["properties"]["customer_id"]["type"] == "integer"
    assert schema["properties"]["region"]["default"] == "eu"
    assert schema["additionalProperties"] is False
