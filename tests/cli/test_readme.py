"""The README's test command is the one .ci/run runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    match = re.search(r"^TEST_COMMAND='(.+)'$", ci, re.MULTILINE)
    assert match, ".ci/run does not define TEST_COMMAND"
    readme_blocks = re.findall(r"```sh\n(.+?)\n```", (ROOT / "README.md").read_text("utf-8"))
    assert readme_blocks[1] == match.group(1)
    assert readme_blocks[0].endswith("iwrs quickstart")
