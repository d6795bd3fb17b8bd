"""Known vulnerabilities in the pinned runtime requirements, with pip-audit.

Fails on any known vulnerability that RELIABILITY.md does not justify (listed in ACCEPTED below).
pip-audit needs the network (PyPI's JSON API for the vulnerability data): when that data cannot be had,
or a dependency cannot be looked up, this prints a clear WARNING naming what went unaudited and
passes, because a CI machine without that access cannot tell a safe pin from an unsafe one.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Vulnerability ids judged not to affect this service, each justified in RELIABILITY.md.
ACCEPTED: frozenset[str] = frozenset()
TIMEOUT_SECONDS = 600


def main() -> int:
    command = [
        str(ROOT / ".venv" / "bin" / "pip-audit"),
        "--requirement",
        str(ROOT / "requirements.txt"),
        "--format",
        "json",
        "--progress-spinner",
        "off",
    ]
    try:
        # A fixed command line of our own files: nothing in it comes from outside.
        run = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"WARNING: pip-audit could not run ({type(exc).__name__}): dependencies NOT audited")
        return 0
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"WARNING: pip-audit failed (exit {run.returncode}: {last}): dependencies NOT audited")
        return 0
    lines, failed = summarise(report)
    print("\n".join(lines))
    return 1 if failed else 0


def summarise(report: dict[str, Any]) -> tuple[list[str], bool]:
    """pip-audit's JSON report -> (lines to print, whether an unaccepted vulnerability was found)."""
    dependencies = report.get("dependencies", [])
    found = [
        (dep["name"], dep["version"], vuln["id"], vuln.get("fix_versions", []))
        for dep in dependencies
        for vuln in dep.get("vulns", [])
        if vuln["id"] not in ACCEPTED and not set(vuln.get("aliases", [])) & ACCEPTED
    ]
    skipped = [dep["name"] for dep in dependencies if "skip_reason" in dep]
    lines = [
        f"VULNERABLE: {name} {version}: {vuln_id} (fixed in {', '.join(fixes) or 'no release yet'})"
        for name, version, vuln_id, fixes in found
    ]
    if skipped:
        lines.append(
            f"WARNING: no vulnerability data for {len(skipped)} of {len(dependencies)} dependencies "
            f"(is PyPI's JSON API reachable from here?); NOT audited: {', '.join(sorted(skipped))}"
        )
    lines.append(
        f"pip-audit: {len(dependencies) - len(skipped)} dependencies audited, "
        f"{len(found)} unaccepted vulnerabilities"
    )
    return lines, bool(found)


if __name__ == "__main__":
    sys.exit(main())
