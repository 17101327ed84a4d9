"""Project-local external tools: the Toxiproxy server binary, installed on first use.

`.ci/install-tools` performs the same install from bash; both pin the same version
(tests/chaos/test_toxiproxy.py checks that the two pins agree).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS_DIR = ROOT / ".tools"
BIN_DIR = TOOLS_DIR / "bin"
LOCK_PATH = TOOLS_DIR / "install.lock"

TOXIPROXY_VERSION = "2.12.0"
TOXIPROXY_MODULE = "github.com/Shopify/toxiproxy/v2"
TOXIPROXY_PACKAGE = f"{TOXIPROXY_MODULE}/cmd/server@v{TOXIPROXY_VERSION}"
# `go install` leaves toxiproxy.Version at "git"; the upstream release build stamps it like this.
TOXIPROXY_LDFLAGS = f"-X {TOXIPROXY_MODULE}.Version={TOXIPROXY_VERSION}"

INSTALL_TIMEOUT_S = 900.0
LOCK_TIMEOUT_S = 960.0  # longer than one install, so a waiter outlives the installer


class ToolInstallError(RuntimeError):
    pass


@lru_cache(maxsize=None)  # exceptions are not cached, so a failed install is retried
def toxiproxy_server_path() -> Path:
    """Return `.tools/bin/toxiproxy-server` at the pinned version, installing it if needed."""
    binary = BIN_DIR / "toxiproxy-server"
    if _reports_version(binary, TOXIPROXY_VERSION):
        return binary
    return _install_toxiproxy_locked(binary)


def _install_toxiproxy_locked(binary: Path) -> Path:
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    with _flock(LOCK_PATH, LOCK_TIMEOUT_S):
        # Another process (xdist worker, install script) may have installed it while we waited.
        if not _reports_version(binary, TOXIPROXY_VERSION):
            _go_install_toxiproxy(binary)
    if not _reports_version(binary, TOXIPROXY_VERSION):
        raise ToolInstallError(f"{binary} was installed but does not report version {TOXIPROXY_VERSION}")
    return binary


def _go_install_toxiproxy(binary: Path) -> None:
    go = shutil.which("go")
    if go is None:
        raise ToolInstallError(
            "`go` is not on PATH: it is needed once to install the Toxiproxy server into "
            f"{BIN_DIR} (or run .ci/install-tools on a machine with Go)")
    print(f"bullyproof: installing toxiproxy-server v{TOXIPROXY_VERSION} into {BIN_DIR} (go install) ...",
          file=sys.stderr, flush=True)
    # Install into a private dir, then rename: readers never see a half-written binary.
    with tempfile.TemporaryDirectory(dir=TOOLS_DIR, prefix="gobin-") as gobin:
        env = {**os.environ, "GOBIN": gobin, "CGO_ENABLED": "0"}
        try:
            done = subprocess.run([go, "install", "-ldflags", TOXIPROXY_LDFLAGS, TOXIPROXY_PACKAGE],
                                  env=env, cwd=TOOLS_DIR, capture_output=True, text=True,
                                  timeout=INSTALL_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise ToolInstallError(f"go install {TOXIPROXY_PACKAGE} took over {INSTALL_TIMEOUT_S:.0f} s") from exc
        if done.returncode != 0:
            raise ToolInstallError(f"go install {TOXIPROXY_PACKAGE} failed ({done.returncode}):\n"
                                   f"{done.stdout}{done.stderr}")
        os.replace(Path(gobin) / "server", binary)


def _reports_version(binary: Path, version: str) -> bool:
    if not os.access(binary, os.X_OK):
        return False
    try:
        out = subprocess.run([str(binary), "-version"], capture_output=True, text=True, timeout=10.0)
    except (OSError, subprocess.TimeoutExpired):
        return False
    # Prints e.g. "toxiproxy-server version 2.12.0".
    return out.returncode == 0 and out.stdout.split()[-1:] == [version]


class _flock:
    """Exclusive fcntl.flock on `path`, polled so the wait has a deadline."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.fd = -1

    def __enter__(self) -> "_flock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise ToolInstallError(f"waited {self.timeout_s:.0f} s for {self.path}") from None
                time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


if __name__ == "__main__":
    print(toxiproxy_server_path())
