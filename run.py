#!/usr/bin/env python3
"""Runs this project's commands with uv, and gets uv first if this machine has none.

    python3 run.py demo [ARGS]   uv run --frozen --no-dev --group sandbox python -m app demo ARGS
    python3 run.py local [ARGS]  uv run --frozen --no-dev --group sandbox python -m app local ARGS
    python3 run.py test [ARGS]   uv run --frozen pytest [ARGS]  (tests/browser left out, with
                                 a line that says so, where no Chromium is found)
    python3 run.py CMD [ARGS]    uv run --frozen --no-dev CMD [ARGS]  (python -m app migrate, ...)
    python3 run.py uv [ARGS]     uv [ARGS]

The run paths install the runtime dependencies only (plus the embedded Postgres, the
`sandbox` group, for demo and local); the test command and the dev tools (pytest, ruff,
mypy, python -m bench...) bring the dev group. uv adds what a command needs to `.venv` and
removes nothing, so a run path after the tests keeps them.

Standard library only. Needs Python 3.11+ (the project's own floor) and the package index.
Everything runs in this file's folder, with this same Python: uv builds `.venv` from
`uv.lock` for the interpreter that runs this file (UV_PYTHON, unless you set it).

Where uv comes from, the first way that works:

1. a uv already here, at least UV_VERSION: `.tools/uv-<version>/` (a previous run), then
   `python3 -m uv`, then `uv` on PATH;
2. pip, into `.tools/` with `pip install --target`: the ordinary client, with your pip
   settings (index, proxy, certificates). A target folder is not the interpreter's own
   environment, so a Python whose packages the OS manages (PEP 668, `externally-managed-
   environment`: Debian, Ubuntu) allows it, and nothing is installed into that Python;
3. no usable pip (Debian without python3-pip): the uv wheel for this platform straight from
   the index (PIP_INDEX_URL, else PyPI) with urllib, its sha256 checked against the one the
   index publishes, and the uv binary inside it unpacked into `.tools/`. uv is one static
   binary, so no virtual environment (and no ensurepip) is needed for it.

`rm -rf .tools` forgets it; the next run gets uv again.

The test command runs the browser tests (tests/browser) with the Chromium named by CHROMIUM,
else `chromium` or `chromium-browser` on PATH, and hands its path on in CHROMIUM. Where there
is none it deselects them (`--deselect tests/browser`: pytest counts them as deselected) and
says so in one line; `.ci/run` installs Debian's chromium first, so CI runs them.
"""

from __future__ import annotations

import hashlib
import html.parser
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

UV_VERSION = "0.13.9"  # the Dockerfile pins the same one (tests/test_setup.py checks)
MIN_PYTHON = (3, 11)
ROOT = Path(__file__).resolve().parent
TOOLS = ROOT / ".tools"
DEFAULT_INDEX = "https://pypi.org/simple"

USAGE = """usage: python3 run.py demo | local | test | uv ARGS | CMD ARGS
  demo [ARGS]   one campaign end to end on this machine (python -m app demo)
  local [ARGS]  the service on this machine until Ctrl-C, with demo data (python -m app local)
  test [ARGS]   the whole test suite (pytest; tests/browser where a Chromium is found)
  uv ARGS       uv itself
  CMD ARGS      any command inside the project's environment (uv run --frozen CMD ARGS),
                e.g. python -m app migrate, python -m app serve, ruff check ., mypy"""

# Which dependency groups a command gets (pyproject.toml): the runtime alone, unless it needs
# the embedded Postgres (sandbox) or the dev tools (dev, which includes sandbox).
RUNTIME = ["--no-dev"]
SANDBOX = ["--no-dev", "--group", "sandbox"]
DEV: list[str] = []  # uv's default groups: dev
DEV_PROGRAMS = ("pytest", "ruff", "mypy")
DEV_MODULES = ("pytest", "ruff", "mypy", "bench", "tests")
SANDBOX_APP_COMMANDS = ("demo", "local")
BROWSER_TESTS = "tests/browser"
CHROMIUM_NAMES = ("chromium", "chromium-browser")


class BootstrapError(Exception):
    """uv could not be found or installed; str() says why, in one line."""


def say(message: str) -> None:
    print(f"run.py: {message}", file=sys.stderr, flush=True)


def version_tuple(text: str) -> tuple[int, ...]:
    """(0, 13, 9) from `uv 0.13.9 (abc 2025-01-01)` or `0.13.9`; () when none is found."""
    match = re.search(r"(\d+(?:\.\d+)*)", text)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def uv_works(command: list[str]) -> bool:
    """True when `command --version` answers a uv at least UV_VERSION."""
    try:
        done = subprocess.run(
            [*command, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    if done.returncode != 0 or not done.stdout.startswith("uv "):
        return False
    return version_tuple(done.stdout) >= version_tuple(UV_VERSION)


def private_uv_dir() -> Path:
    return TOOLS / f"uv-{UV_VERSION}"


def binary_in(folder: Path) -> Path | None:
    """The uv executable pip or the wheel left in folder, if any."""
    for sub in ("bin", "Scripts"):
        for name in ("uv", "uv.exe"):
            candidate = folder / sub / name
            if candidate.is_file():
                return candidate
    return None


def existing_uv() -> list[str] | None:
    private = binary_in(private_uv_dir())
    if private is not None and uv_works([str(private)]):
        return [str(private)]
    if uv_works([sys.executable, "-m", "uv"]):
        return [sys.executable, "-m", "uv"]
    on_path = shutil.which("uv")
    if on_path and uv_works([on_path]):
        return [on_path]
    return None


def prepare_tools() -> None:
    TOOLS.mkdir(exist_ok=True)
    ignore = TOOLS / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# made by run.py: uv for this checkout, never committed\n*\n")


def install_with_pip() -> Path:
    """uv into .tools/ with `pip install --target` (allowed under PEP 668)."""
    prepare_tools()
    staging = Path(tempfile.mkdtemp(prefix="pip-", dir=TOOLS))
    env = dict(os.environ, PIP_ROOT_USER_ACTION="ignore", PIP_DISABLE_PIP_VERSION_CHECK="1")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-warn-script-location"]
    command += ["--target", str(staging), f"uv=={UV_VERSION}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
            raise BootstrapError(
                "pip could not install uv: " + (lines[-1].strip() if lines else "no output")
            )
        binary = binary_in(staging)
        if binary is None or not uv_works([str(binary)]):
            raise BootstrapError("pip installed uv, but its binary does not run here")
        return publish(staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(staging: Path) -> Path:
    """Moves a complete staging folder to .tools/uv-<version> (a rename: all or nothing)."""
    target = private_uv_dir()
    staging.chmod(0o755)  # mkdtemp made it private to its owner
    if binary_in(target) is None:
        shutil.rmtree(target, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError:  # a concurrent run got there first
            if binary_in(target) is None:
                raise
    binary = binary_in(target)
    assert binary is not None
    return binary


# --- no pip: the wheel from the index, with urllib -------------------------------------------


def platform_matches(tag: str, system: str, machine: str, libc: tuple[str, str]) -> bool:
    """Whether one wheel platform tag (e.g. `manylinux_2_17_x86_64`) runs on this machine."""
    machine = machine.lower()
    if system == "Linux":
        arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
        arch = "armv7l" if arch.startswith("armv7") else arch
        if tag == "linux_" + arch:  # a plain Linux build (armv6l): any libc
            return True
        if not tag.endswith("_" + arch):
            return False
        if libc[0] == "glibc":
            mine = version_tuple(libc[1])
            legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
            for prefix, needs in legacy.items():
                if tag.startswith(prefix + "_"):
                    return needs <= mine
            found = re.match(r"manylinux_(\d+)_(\d+)_", tag)
            return found is not None and (int(found.group(1)), int(found.group(2))) <= mine
        return tag.startswith("musllinux_")  # not glibc: musl (Alpine)
    if system == "Darwin":
        found = re.match(r"macosx_(\d+)_(\d+)_(\w+)$", tag)
        if found is None:
            return False
        arch_ok = found.group(3) in (machine, "universal2")
        return arch_ok and (int(found.group(1)), int(found.group(2))) <= version_tuple(
            platform.mac_ver()[0] or "99.0"
        )
    if system == "Windows":
        wanted = {"amd64": "win_amd64", "x86_64": "win_amd64", "arm64": "win_arm64"}
        return tag == wanted.get(machine, "win32")
    return False


def pick_wheel(
    filenames: list[str], system: str, machine: str, libc: tuple[str, str]
) -> str | None:
    """The uv UV_VERSION wheel among filenames that runs on this machine, if any."""
    for filename in filenames:
        found = re.match(rf"uv-{re.escape(UV_VERSION)}-py3-none-(.+)\.whl$", filename)
        if found and any(
            platform_matches(tag, system, machine, libc) for tag in found.group(1).split(".")
        ):
            return filename
    return None


class _Links(html.parser.HTMLParser):
    """The anchors of a PEP 503 simple-index page: (file name, href)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data: str) -> None:
        if self._href is not None and data.strip():
            self.links.append((data.strip(), self._href))
            self._href = None


def index_url() -> str:
    return (os.environ.get("PIP_INDEX_URL") or DEFAULT_INDEX).rstrip("/")


def fetch(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "campaign-queue run.py"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        data: bytes = answer.read()
    return data


def install_from_index() -> Path:
    """The uv wheel for this platform from the index, hash-checked; its binary into .tools/."""
    page_url = index_url() + "/uv/"
    try:
        page = fetch(page_url).decode("utf-8", "replace")
    except OSError as exc:
        raise BootstrapError(f"cannot read {page_url}: {exc}") from None
    parser = _Links()
    parser.feed(page)
    hrefs = dict(parser.links)
    libc = platform.libc_ver() if platform.system() == "Linux" else ("", "")
    filename = pick_wheel(list(hrefs), platform.system(), platform.machine(), libc)
    if filename is None:
        raise BootstrapError(
            f"no uv {UV_VERSION} wheel for {platform.system()} {platform.machine()} at {page_url}"
        )
    url = urllib.parse.urljoin(page_url, hrefs[filename])
    expected = urllib.parse.urlsplit(url).fragment.partition("sha256=")[2]
    if not expected:
        raise BootstrapError(f"the index gives no sha256 for {filename}: not installed")
    try:
        data = fetch(url.split("#", 1)[0])
    except OSError as exc:
        raise BootstrapError(f"cannot download {filename}: {exc}") from None
    if hashlib.sha256(data).hexdigest() != expected.lower():
        raise BootstrapError(f"{filename}: sha256 differs from the index's: not installed")

    prepare_tools()
    staging = Path(tempfile.mkdtemp(prefix="wheel-", dir=TOOLS))
    try:
        wheel_path = staging / filename
        wheel_path.write_bytes(data)
        with zipfile.ZipFile(wheel_path) as wheel:
            members = [
                name
                for name in wheel.namelist()
                if re.fullmatch(r"uv-[^/]+\.data/scripts/uv(\.exe)?", name)
            ]
            if not members:
                raise BootstrapError(f"{filename} carries no uv binary")
            binary = staging / "bin" / Path(members[0]).name
            binary.parent.mkdir()
            binary.write_bytes(wheel.read(members[0]))
        binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        wheel_path.unlink()
        if not uv_works([str(binary)]):
            raise BootstrapError(f"the uv binary from {filename} does not run here")
        return publish(staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def find_or_install_uv() -> list[str]:
    found = existing_uv()
    if found is not None:
        return found
    say(f"no uv {UV_VERSION} or newer here: installing it into {TOOLS.name}/ (once)")
    try:
        binary = install_with_pip()
        say(f"uv {UV_VERSION} installed with pip --target into {TOOLS.name}/")
        return [str(binary)]
    except BootstrapError as pip_failure:
        say(f"{pip_failure}; fetching the wheel from {index_url()} instead")
        try:
            binary = install_from_index()
        except BootstrapError as index_failure:
            raise BootstrapError(f"{pip_failure}; and {index_failure}") from None
    say(f"uv {UV_VERSION} unpacked from its wheel into {TOOLS.name}/")
    return [str(binary)]


def groups_for(command: list[str]) -> list[str]:
    """uv's group options for a command run in the project's environment."""
    program = Path(command[0]).name
    if program in DEV_PROGRAMS:
        return DEV
    if program.startswith("python") and len(command) > 2 and command[1] == "-m":
        module, rest = command[2], command[3:]
        if module.split(".")[0] in DEV_MODULES:
            return DEV
        if module.startswith("app.sandbox") or (
            module == "app" and rest[:1] and rest[0] in SANDBOX_APP_COMMANDS
        ):
            return SANDBOX
    return RUNTIME


def uv_arguments(args: list[str]) -> list[str]:
    """What to hand uv for run.py's arguments."""
    if args[0] == "uv":
        return args[1:]
    if args[0] in SANDBOX_APP_COMMANDS:  # demo, local
        command = ["python", "-m", "app", *args]
    elif args[0] == "test":
        command = ["pytest", *args[1:]]
    else:
        command = args
    return ["run", "--frozen", *groups_for(command), *command]


def find_chromium(env: dict[str, str]) -> tuple[str | None, str]:
    """The Chromium the browser tests drive, or None and why there is none."""
    named = env.get("CHROMIUM", "")
    if named:
        if os.path.isfile(named) and os.access(named, os.X_OK):
            return named, ""
        return None, f"CHROMIUM={named} is not an executable file"
    for name in CHROMIUM_NAMES:
        found = shutil.which(name, path=env.get("PATH"))
        if found:
            return found, ""
    return None, "no Chromium on PATH (chromium, chromium-browser) and CHROMIUM is not set"


def with_browser_tests(argv: list[str], env: dict[str, str]) -> list[str]:
    """The test command's arguments: the browser tests deselected where no Chromium is found
    (said in one line); else CHROMIUM set in env to the one they drive."""
    chromium, why = find_chromium(env)
    if chromium is None:
        say(
            f"browser tests ({BROWSER_TESTS}) left out: {why}; "
            "install one (apt-get install chromium) or set CHROMIUM to run them"
        )
        return [argv[0], "--deselect", BROWSER_TESTS, *argv[1:]]
    env["CHROMIUM"] = chromium
    return argv


def main(argv: list[str]) -> int:
    if sys.version_info < MIN_PYTHON:
        need, have = ".".join(map(str, MIN_PYTHON)), ".".join(map(str, sys.version_info[:2]))
        print(
            f"error: campaign-queue needs Python {need} or newer; this is {have}. "
            "Run this file with a newer python3 (e.g. python3.11 run.py ...).",
            file=sys.stderr,
        )
        return 2
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    try:
        uv = find_or_install_uv()
    except BootstrapError as exc:
        print(f"error: uv is needed and could not be installed: {exc}", file=sys.stderr)
        return 1
    os.chdir(ROOT)
    env = dict(os.environ)
    env.setdefault("UV_PYTHON", sys.executable)
    if argv[0] == "test":
        argv = with_browser_tests(argv, env)
    command = [*uv, *uv_arguments(argv)]
    if os.name == "posix":  # the command takes this process's place (signals, exit code)
        os.execvpe(command[0], command, env)
    return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
