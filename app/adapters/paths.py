"""Where the project's non-Python files live: the checkout (editable install, tests) or the
working directory of the service image, which holds alembic.ini, migrations/ and studies/."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def project_root() -> Path:
    for candidate in (os.environ.get("IWRS_HOME"), _PACKAGE_ROOT, Path.cwd()):
        if candidate and (Path(candidate) / "alembic.ini").exists():
            return Path(candidate)
    return _PACKAGE_ROOT


def studies_dir() -> Path:
    return project_root() / "studies"
