"""The CI audit step (.ci/audit.py) fails on a known vulnerability and only warns when it cannot audit."""

import importlib.util
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ROOT


def audit_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_audit", ROOT / ".ci" / "audit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VULNERABLE = {
    "name": "requests",
    "version": "2.25.0",
    "vulns": [{"id": "PYSEC-2023-74", "fix_versions": ["2.31.0"], "aliases": ["CVE-2023-32681"]}],
}
CLEAN = {"name": "orjson", "version": "3.13.0", "vulns": []}
UNREACHABLE = {"name": "fastapi", "skip_reason": "Dependency not found on PyPI and could not be audited"}


@pytest.mark.parametrize(
    ("dependencies", "failed", "expected"),
    [
        ([CLEAN, VULNERABLE], True, "VULNERABLE: requests 2.25.0: PYSEC-2023-74 (fixed in 2.31.0)"),
        ([CLEAN], False, "pip-audit: 1 dependencies audited, 0 unaccepted vulnerabilities"),
        ([UNREACHABLE, CLEAN], False, "WARNING: no vulnerability data for 1 of 2 dependencies"),
        ([UNREACHABLE], False, "NOT audited: fastapi"),
    ],
)
def test_audit_fails_on_vulnerabilities_and_warns_when_it_cannot_audit(
    dependencies: list[dict[str, Any]], failed: bool, expected: str
) -> None:
    lines, found = audit_module().summarise({"dependencies": dependencies})

    assert found is failed
    assert any(expected in line for line in lines), lines
