"""The README's promises that can rot: its settings table and its quick-start commands."""

import re
from pathlib import Path

from config import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.split("```")[1]
    assert "make run" in first_block and "make test" in first_block


def test_every_setting_is_in_the_readme_table() -> None:
    section = README.split("## Settings", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_0-9]+)` \|", section, flags=re.MULTILINE))
    assert {name.upper() for name in Settings.model_fields} <= documented
