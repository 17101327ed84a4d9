"""Project-local external tools, installed on first use with `go install` at pinned versions:
the Toxiproxy server (chaos tests), grpcurl (drives a node the way an operator would) and ghz
(the gRPC load generator of `bullyproof bench`); and Debian's etcd (the benchmark's reference).
fencecheck, the project's own Go program (chaos/fencecheck: Porcupine, pinned by its go.sum), is built
by chaos/fencecheck/build.sh, here and in `.ci/install-tools` alike.

`.ci/install-tools` performs the same installs of Toxiproxy and grpcurl from bash; both pin the same
versions (tests/chaos/test_toxiproxy.py and tests/integration/test_grpcurl.py check that the pins
agree). ghz and etcd are only the benchmark's, so only `bullyproof bench` installs them.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from functools import cache
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

GRPCURL_VERSION = "1.9.3"
GRPCURL_PACKAGE = f"github.com/fullstorydev/grpcurl/cmd/grpcurl@v{GRPCURL_VERSION}"
# `go install` leaves main.version at "dev build <no version set>"; the upstream release build stamps it like this.
GRPCURL_LDFLAGS = f"-X main.version=v{GRPCURL_VERSION}"

GHZ_VERSION = "0.120.0"
GHZ_PACKAGE = f"github.com/bojand/ghz/cmd/ghz@v{GHZ_VERSION}"
# `go install` leaves main.version at "dev"; the upstream release build (goreleaser) stamps it like this.
GHZ_LDFLAGS = f"-X main.version={GHZ_VERSION}"

# Debian's etcd (bookworm: 3.4.23); the benchmark records the version it ran.
ETCD_APT_PACKAGES = ("etcd-server",)
ETCD_BINARY = Path("/usr/bin/etcd")

FENCECHECK_BUILD = ROOT / "chaos" / "fencecheck" / "build.sh"

INSTALL_TIMEOUT_S = 900.0
LOCK_TIMEOUT_S = 960.0  # longer than one install, so a waiter outlives the installer


class ToolInstallError(RuntimeError):
    pass


@cache  # exceptions are not cached, so a failed install is retried
def toxiproxy_server_path() -> Path:
    """Return `.tools/bin/toxiproxy-server` at the pinned version, installing it if needed."""
    # Prints e.g. "toxiproxy-server version 2.12.0" (on stdout).
    return _go_tool(BIN_DIR / "toxiproxy-server", TOXIPROXY_PACKAGE, TOXIPROXY_LDFLAGS, "server", TOXIPROXY_VERSION)


@cache
def grpcurl_path() -> Path:
    """Return `.tools/bin/grpcurl` at the pinned version, installing it if needed."""
    # Prints e.g. "grpcurl v1.9.3" (on stderr).
    return _go_tool(BIN_DIR / "grpcurl", GRPCURL_PACKAGE, GRPCURL_LDFLAGS, "grpcurl", f"v{GRPCURL_VERSION}")


@cache
def ghz_path() -> Path:
    """Return `.tools/bin/ghz` at the pinned version, installing it if needed."""
    # Prints e.g. "0.120.0"; ghz takes only the double-dash flag.
    return _go_tool(BIN_DIR / "ghz", GHZ_PACKAGE, GHZ_LDFLAGS, "ghz", GHZ_VERSION, version_flag="--version")


@cache
def fencecheck_path() -> Path:
    """Return `.tools/bin/fencecheck` built from chaos/fencecheck's current sources, building it if needed.

    The script does the work (the sources' hash, the lock, the rename) and prints the path: one
    builder for this and `.ci/install-tools`. A no-op costs a few milliseconds."""
    done = _run(["bash", str(FENCECHECK_BUILD)])
    if done.returncode != 0:
        raise ToolInstallError(f"{FENCECHECK_BUILD} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return Path(done.stdout.split()[-1])


@cache
def etcd_path() -> Path:
    """Return Debian's etcd server binary, installing the package with apt-get if it is missing."""
    if _etcd_runs():
        return ETCD_BINARY
    apt = shutil.which("apt-get")
    if apt is None:
        raise ToolInstallError(
            f"{ETCD_BINARY} is missing and there is no apt-get here: install etcd 3.4+ "
            f"(Debian package {' '.join(ETCD_APT_PACKAGES)}) to compare with it"
        )
    sudo: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise ToolInstallError(
                f"{ETCD_BINARY} is missing; installing {' '.join(ETCD_APT_PACKAGES)} needs root or sudo"
            )
        sudo = ["sudo"]
    install = [
        *sudo,
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        apt,
        "install",
        "-y",
        "--no-install-recommends",
        *ETCD_APT_PACKAGES,
    ]
    print(f"bullyproof: installing {' '.join(ETCD_APT_PACKAGES)} (apt-get) ...", file=sys.stderr, flush=True)
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    with _flock(LOCK_PATH, LOCK_TIMEOUT_S):  # the same lock as the Go tools: one installer at a time
        if not _etcd_runs():
            done = _run(install)
            if done.returncode != 0:  # the package lists may be old or missing: update them only then
                _run([*sudo, apt, "update"])
                done = _run(install)
            if done.returncode != 0:
                raise ToolInstallError(
                    f"apt-get install {' '.join(ETCD_APT_PACKAGES)} failed "
                    f"({done.returncode}):\n{done.stdout}{done.stderr}"
                )
    if not _etcd_runs():
        raise ToolInstallError(f"{' '.join(ETCD_APT_PACKAGES)} was installed but {ETCD_BINARY} --version fails")
    return ETCD_BINARY


def etcd_installed() -> bool:
    return _etcd_runs()


def ghz_installed() -> bool:
    return _reports_version(BIN_DIR / "ghz", GHZ_VERSION, "--version")


def etcd_version() -> str:
    """`etcd --version`'s first line's version, e.g. "3.4.23"."""
    out = subprocess.run([str(ETCD_BINARY), "--version"], capture_output=True, text=True, timeout=10.0).stdout
    return out.split("\n")[0].split()[-1]


def _etcd_runs() -> bool:
    try:
        return subprocess.run([str(ETCD_BINARY), "--version"], capture_output=True, timeout=10.0).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise ToolInstallError(f"{' '.join(argv)} took over {INSTALL_TIMEOUT_S:.0f} s") from exc


def _go_tool(
    binary: Path, package: str, ldflags: str, built_name: str, version: str, version_flag: str = "-version"
) -> Path:
    """`binary` if it reports `version`; otherwise `go install package` (under the lock) and rename it there."""
    if _reports_version(binary, version, version_flag):
        return binary
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    with _flock(LOCK_PATH, LOCK_TIMEOUT_S):
        # Another process (xdist worker, install script) may have installed it while we waited.
        if not _reports_version(binary, version, version_flag):
            _go_install(binary, package, ldflags, built_name)
    if not _reports_version(binary, version, version_flag):
        raise ToolInstallError(f"{binary} was installed but does not report version {version}")
    return binary


def _go_install(binary: Path, package: str, ldflags: str, built_name: str) -> None:
    go = shutil.which("go")
    if go is None:
        raise ToolInstallError(
            f"`go` is not on PATH: it is needed once to install {binary.name} into "
            f"{BIN_DIR} (or run .ci/install-tools on a machine with Go)"
        )
    print(f"bullyproof: installing {package} into {BIN_DIR} (go install) ...", file=sys.stderr, flush=True)
    # Install into a private dir, then rename: readers never see a half-written binary.
    with tempfile.TemporaryDirectory(dir=TOOLS_DIR, prefix="gobin-") as gobin:
        env = {**os.environ, "GOBIN": gobin, "CGO_ENABLED": "0"}
        try:
            done = subprocess.run(
                [go, "install", "-ldflags", ldflags, package],
                env=env,
                cwd=TOOLS_DIR,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as exc:
            raise ToolInstallError(f"go install {package} took over {INSTALL_TIMEOUT_S:.0f} s") from exc
        if done.returncode != 0:
            raise ToolInstallError(f"go install {package} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        os.replace(Path(gobin) / built_name, binary)


def _reports_version(binary: Path, version: str, flag: str = "-version") -> bool:
    """True if `binary -version` succeeds and its last word (stdout or stderr) is `version`."""
    if not os.access(binary, os.X_OK):
        return False
    try:
        out = subprocess.run([str(binary), flag], capture_output=True, text=True, timeout=10.0)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and (out.stdout + out.stderr).split()[-1:] == [version]


class _flock:
    """Exclusive fcntl.flock on `path`, polled so the wait has a deadline."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.fd = -1

    def __enter__(self) -> _flock:
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
    print(grpcurl_path())
    if sys.argv[1:] == ["bench"]:
        print(ghz_path())
        print(etcd_path())
