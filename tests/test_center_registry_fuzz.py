"""Registry files of any bytes: read_registry gives devices or a RegistryError, never
another exception (issue 17: every parser of outside input fuzzed)."""

import pytest
from center_factory import REGISTRY_CSV
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_center_registry import YAML

from center.registry import RegistryError, read_registry

FILES = {"devices.csv": REGISTRY_CSV.encode("utf-8"), "devices.yaml": YAML.encode("utf-8")}


def mutated(original: bytes) -> st.SearchStrategy[bytes]:
    """The file with a run of its bytes replaced by others, or cut short."""
    return st.tuples(st.integers(0, len(original)), st.integers(0, 40),
                     st.binary(max_size=40)).map(
        lambda t: original[:t[0]] + t[2] + original[t[0] + t[1]:])


def read_any(tmp_path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    try:
        devices = read_registry(path)
    except RegistryError as exc:
        assert str(exc) and "Traceback" not in str(exc)
    else:
        assert all(d.device_id for d in devices)


@pytest.mark.parametrize("name", sorted(FILES))
@settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_change_to_a_registry_file_is_read_or_refused(tmp_path, name, data):
    read_any(tmp_path, name, data.draw(mutated(FILES[name])))


@pytest.mark.parametrize("name", sorted(FILES))
@settings(max_examples=100, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_any_text_is_read_or_refused(tmp_path, name, text):
    read_any(tmp_path, name, text.encode("utf-8"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FILES))
@settings(max_examples=3000, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_change_to_a_registry_file_long_run(tmp_path, name, data):
    read_any(tmp_path, name, data.draw(mutated(FILES[name])))
