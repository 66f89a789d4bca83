"""The contract test's tools, each in a directory of its own outside the project's venv.

- openapi-python-client (which pins its own dependencies) in a throwaway virtual environment,
  with what the generated client needs to run (httpx, attrs, python-dateutil);
- openapi-typescript, TypeScript and Spectral from the npm registry, installed with `npm ci`
  from tests/contract/package.json and its package-lock.json.

Both live under IWRS_CONTRACT_TOOLS_DIR (default ~/.cache/iwrs/contract-tools), in a
directory named after the hash of what they are installed from, so a warm machine reuses them
(CI's fresh clone too) and a version bump installs anew. A missing tool (no node or npm, no
network) is `Unavailable`: the suite skips on a developer's machine and fails where
IWRS_TEST_REQUIRE_CONTRACT=1 (as in .ci/run).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON_TOOLS = [
    "openapi-python-client==0.29.1",
    # What the generated client imports besides httpx and attrs (the generator brings those).
    "python-dateutil==2.9.0.post0",
]
NODE_FILES = ("package.json", "package-lock.json")
INSTALL_TIMEOUT = 600  # seconds: a cold install is 10-30 s here; a stalled network fails


class Unavailable(Exception):
    """A tool cannot be had here (not installed, no network): skip, or fail in CI."""


def tools_root() -> Path:
    configured = os.environ.get("IWRS_CONTRACT_TOOLS_DIR")
    if configured:
        return Path(configured)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "iwrs" / "contract-tools"


def _digest(*parts: bytes) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(part)
        sha.update(b"\0")
    return sha.hexdigest()[:16]


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One installer at a time on this machine (two test runs may share the cache)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(
    args: list[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> None:
    try:
        done = subprocess.run(  # noqa: S603 - fixed tool commands
            args,
            capture_output=True,
            text=True,
            check=False,
            timeout=INSTALL_TIMEOUT,
            cwd=cwd,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{what}: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip()[-1500:]
        raise Unavailable(f"{what} failed (exit {done.returncode}):\n{tail}")


def _installed(target: Path, kind: str, install: Callable[[Path], None]) -> Path:
    """`target`, installed once: a directory without its `.complete` mark is made anew, and
    the older installs of the same kind are removed then."""
    mark = target / ".complete"
    if mark.exists():
        return target
    with _locked(target.parent):
        if not mark.exists():
            shutil.rmtree(target, ignore_errors=True)
            install(target)
            mark.write_text("ok\n", encoding="utf-8")
            for old in target.parent.glob(f"{kind}-*"):
                if old != target:
                    shutil.rmtree(old, ignore_errors=True)
    return target


def python_tools() -> Path:
    """The virtual environment holding openapi-python-client; returns its bin directory."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    kind = f"python{version}"
    target = tools_root() / f"{kind}-{_digest(*(r.encode() for r in PYTHON_TOOLS))}"

    def install(venv: Path) -> None:
        _run([sys.executable, "-m", "venv", str(venv)], "python -m venv")
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        _run([*pip, *PYTHON_TOOLS], "pip install " + " ".join(PYTHON_TOOLS))

    return _installed(target, kind, install) / "bin"


def node_tools() -> Path:
    """node_modules/.bin of the npm tools (openapi-typescript, tsc, spectral)."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        raise Unavailable(
            f"{' and '.join(missing)} not found: install Node.js 20+ and npm "
            "(Debian: apt-get install -y nodejs npm) to run the contract test's npm tools"
        )
    files = [(HERE / name).read_bytes() for name in NODE_FILES]
    target = tools_root() / f"node-{_digest(*files)}"

    def install(directory: Path) -> None:
        directory.mkdir(parents=True)
        for name in NODE_FILES:
            shutil.copyfile(HERE / name, directory / name)
        env = {
            **os.environ,
            "npm_config_update_notifier": "false",
            "npm_config_fund": "false",
            "npm_config_audit": "false",
            "SCARF_ANALYTICS": "false",
        }
        # --ignore-scripts: none of these tools needs an install script (and one would only
        # report usage statistics).
        _run(
            ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            "npm ci (tests/contract/package-lock.json)",
            cwd=directory,
            env=env,
        )

    return _installed(target, "node", install) / "node_modules" / ".bin"
