"""run.py, the README's two commands: uv found or installed on a fresh machine, then uv run.

The bootstrap runs for real, in a scratch folder, with a fresh HOME and PATH, under:
- a Python whose pip is externally managed (PEP 668): a simulated one (the real stdlib and
  site-packages behind PYTHONHOME, plus an EXTERNALLY-MANAGED marker, so pip itself refuses
  `pip install uv`), and the machine's own system Python when it is one (Debian, Ubuntu);
- a Python without pip (Debian without python3-pip): the wheel comes from a loopback index.
uv itself is a fake here (a small script in a wheel of the pinned version): these tests check
how uv is obtained and called, offline. The real uv and the real dependencies are exercised
by every CI run, which starts with `python3 run.py test`.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import http.server
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import run

ROOT = Path(__file__).resolve().parent.parent
UV = run.UV_VERSION
pytestmark = pytest.mark.skipif(os.name != "posix", reason="the scratch set-up uses POSIX paths")


# --- fakes: a uv wheel, a scratch checkout, a clean environment ------------------------------


def fake_uv_script(label: str, version: str = UV) -> str:
    return (
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then echo "uv {version} ({label})"; exit 0; fi\n'
        f'echo "fake-uv {label} args: $*"\n'
        'echo "fake-uv UV_PYTHON=$UV_PYTHON"\n'
        'echo "fake-uv cwd=$(pwd)"\n'
    )


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(folder: Path, platform_tag: str, label: str) -> Path:
    """A wheel named like uv's, carrying a shell script as its `uv` binary."""
    folder.mkdir(parents=True, exist_ok=True)
    tags = "".join(f"Tag: py3-none-{tag}\n" for tag in platform_tag.split("."))
    files = {
        f"uv-{UV}.data/scripts/uv": fake_uv_script(label).encode(),
        f"uv-{UV}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: uv\nVersion: {UV}\n".encode(),
        f"uv-{UV}.dist-info/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: false\n{tags}"
        ).encode(),
    }
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    files[f"uv-{UV}.dist-info/RECORD"] = (record + f"uv-{UV}.dist-info/RECORD,,\n").encode()
    path = folder / f"uv-{UV}-py3-none-{platform_tag}.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            mode = 0o755 if name.endswith("/uv") else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16  # pip keeps x only on a regular file
            wheel.writestr(info, data)
    return path


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A checkout holding only run.py: the fake uv needs nothing else."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy2(ROOT / "run.py", repo / "run.py")
    return repo


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    build_wheel(folder, "any", "from-pip")
    return folder


def fresh_env(tmp_path: Path, wheels: Path | None = None, **extra: str) -> dict[str, str]:
    """A fresh machine's environment: no uv on PATH, a new HOME, no pip configuration; pip
    reads only the local wheel folder (offline)."""
    keep = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TMPDIR", "TZ")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        **keep,
        "PATH": "/usr/bin:/bin",
        # Offline: the index fallback finds nothing unless a test serves one.
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "HOME": str(home),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_CACHE_DIR": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    if wheels is not None:
        env |= {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}
    return env | extra


def run_py(
    python: str, repo: Path, args: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, str(repo / "run.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=repo.parent,  # not the checkout: run.py works from its own folder
        timeout=180,
        check=False,
    )


def private_binary(repo: Path) -> Path:
    return repo / ".tools" / f"uv-{UV}" / "bin" / "uv"


def probe(python: str, code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def assert_externally_managed(python: str, wheels: Path, env: dict[str, str]) -> None:
    """The interpreter is PEP 668's case for real: its pip refuses to install uv into it."""
    refused = subprocess.run(
        [python, "-m", "pip", "install", "--no-index", "--find-links", str(wheels), "uv"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert refused.returncode != 0
    assert "externally-managed-environment" in refused.stdout + refused.stderr


# --- PEP 668 ---------------------------------------------------------------------------------


def _base_python() -> tuple[str, dict[str, str]]:
    """The interpreter this venv is made from, with its stdlib and purelib paths."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if not base.exists():
        pytest.skip("no base interpreter at sys.base_prefix/bin")
    code = "import json, sys, sysconfig; print(json.dumps({'prefix': sys.prefix, "
    code += "'stdlib': sysconfig.get_path('stdlib'), 'purelib': sysconfig.get_path('purelib')}))"
    done = subprocess.run([str(base), "-c", code], capture_output=True, text=True, check=True)
    paths: dict[str, str] = json.loads(done.stdout)
    return str(base), paths


@pytest.fixture
def externally_managed_home(tmp_path: Path) -> tuple[str, Path]:
    """PYTHONHOME for the base interpreter: its stdlib and packages (pip, not uv) through
    symlinks, and the EXTERNALLY-MANAGED marker where PEP 668 puts it, the stdlib folder."""
    python, paths = _base_python()
    prefix, stdlib, purelib = Path(paths["prefix"]), Path(paths["stdlib"]), Path(paths["purelib"])
    if not (stdlib.is_relative_to(prefix) and purelib.parent == stdlib):
        pytest.skip("this interpreter's layout is not prefix/lib/pythonX.Y/site-packages")
    home = tmp_path / "pyhome"
    fake_stdlib = home / stdlib.relative_to(prefix)
    fake_stdlib.mkdir(parents=True)
    for entry in stdlib.iterdir():
        if entry.name not in (purelib.name, "EXTERNALLY-MANAGED"):
            (fake_stdlib / entry.name).symlink_to(entry)
    (fake_stdlib / purelib.name).mkdir()
    for entry in purelib.iterdir():
        if not entry.name.lower().startswith("uv"):
            (fake_stdlib / purelib.name / entry.name).symlink_to(entry)
    (fake_stdlib / "EXTERNALLY-MANAGED").write_text(
        "[externally-managed]\nError=simulated for tests/test_setup.py\n"
    )
    return python, home


def test_a_python_whose_pip_is_externally_managed_gets_uv_with_pip_target(
    scratch: Path, wheels: Path, tmp_path: Path, externally_managed_home: tuple[str, Path]
) -> None:
    python, home = externally_managed_home
    env = fresh_env(tmp_path, wheels, PYTHONHOME=str(home))
    if probe(python, "import pip", env).returncode != 0:
        pytest.skip("the base interpreter has no pip")
    assert probe(python, "import uv", env).returncode != 0  # nothing to find: a fresh machine
    assert_externally_managed(python, wheels, env)  # `pip install uv` fails there, for real

    done = run_py(python, scratch, ["uv", "--version"], env)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"uv {UV} (from-pip)"
    assert "installed with pip --target" in done.stderr
    assert private_binary(scratch).is_file()
    assert (scratch / ".tools" / ".gitignore").read_text().splitlines()[-1] == "*"


def _system_pythons() -> Iterator[str]:
    seen: set[str] = set()
    for candidate in ("/usr/bin/python3", shutil.which("python3", path="/usr/bin:/bin")):
        if candidate and os.path.exists(candidate) and os.path.realpath(candidate) not in seen:
            seen.add(os.path.realpath(candidate))
            yield candidate


_CHECK_SYSTEM = (
    "import os, sys, sysconfig; "
    "marker = os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED'); "
    "import pip; "
    "ok = sys.version_info >= (3, 11) and os.path.exists(marker); "
    "sys.exit(0 if ok else 1)"
)


def test_the_system_python_of_debian_or_ubuntu_gets_uv_too(
    scratch: Path, wheels: Path, tmp_path: Path
) -> None:
    env = fresh_env(tmp_path, wheels)
    pythons = [p for p in _system_pythons() if probe(p, _CHECK_SYSTEM, env).returncode == 0]
    if not pythons:
        pytest.skip("no externally managed system Python 3.11+ with pip on this machine")
    python = pythons[0]
    if probe(python, "import uv", env).returncode == 0:
        pytest.skip(f"{python} already has uv")
    assert_externally_managed(python, wheels, env)

    done = run_py(python, scratch, ["uv", "--version"], env)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"uv {UV} (from-pip)"
    assert private_binary(scratch).is_file()


# --- no pip: the wheel from the index, with urllib --------------------------------------------


class _Index:
    """A PEP 503 index on loopback serving uv wheels: {file name: (bytes, advertised sha)}."""

    def __init__(self, files: dict[str, tuple[bytes, str]]) -> None:
        self.files = files
        self.requests: list[str] = []
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                index.requests.append(self.path)
                if self.path == "/simple/uv/":
                    links = "".join(
                        f'<a href="../../files/{name}#sha256={sha}">{name}</a><br/>\n'
                        for name, (_, sha) in index.files.items()
                    )
                    self._send(f"<html><body>{links}</body></html>".encode(), "text/html")
                elif self.path.startswith("/files/") and self.path[7:] in index.files:
                    self._send(index.files[self.path[7:]][0], "application/octet-stream")
                else:
                    self.send_error(404)

            def _send(self, body: bytes, kind: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Index:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _this_machine_tag() -> str:
    arch = platform.machine()
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("the loopback index serves Linux glibc wheels")
    if arch not in ("x86_64", "aarch64"):
        pytest.skip(f"no uv wheel name for {arch} in this test")
    return f"manylinux_2_17_{arch}.manylinux2014_{arch}"


def _index_files(tmp_path: Path, tampered: bool = False) -> dict[str, tuple[bytes, str]]:
    """Decoys for other platforms first, then this machine's wheel."""
    files: dict[str, tuple[bytes, str]] = {}
    for tag in ("win_amd64", "macosx_11_0_arm64", "musllinux_1_1_x86_64", _this_machine_tag()):
        label = "right-platform" if tag == _this_machine_tag() else f"wrong-{tag}"
        data = build_wheel(tmp_path / "index" / tag, tag, label).read_bytes()
        sha = hashlib.sha256(b"tampered" if tampered else data).hexdigest()
        files[f"uv-{UV}-py3-none-{tag}.whl"] = (data, sha)
    return files


@pytest.fixture
def no_pip(tmp_path: Path) -> Path:
    """A PYTHONPATH entry whose `pip` fails to import, as where python3-pip is missing."""
    shadow = tmp_path / "no-pip"
    (shadow / "pip").mkdir(parents=True)
    (shadow / "pip" / "__init__.py").write_text('raise ImportError("No module named pip")\n')
    return shadow


def test_without_pip_the_wheel_for_this_platform_comes_from_the_index(
    scratch: Path, tmp_path: Path, no_pip: Path
) -> None:
    with _Index(_index_files(tmp_path)) as index:
        env = fresh_env(tmp_path, PYTHONPATH=str(no_pip), PIP_INDEX_URL=index.url)
        done = run_py(sys.executable, scratch, ["uv", "--version"], env)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"uv {UV} (right-platform)"
    assert "pip could not install uv" in done.stderr
    assert "unpacked from its wheel" in done.stderr
    assert index.requests == ["/simple/uv/", f"/files/uv-{UV}-py3-none-{_this_machine_tag()}.whl"]
    binary = private_binary(scratch)
    assert os.access(binary, os.X_OK)
    assert sorted(p.name for p in (scratch / ".tools").iterdir()) == [".gitignore", f"uv-{UV}"]


def test_a_wheel_whose_hash_differs_from_the_index_is_refused(
    scratch: Path, tmp_path: Path, no_pip: Path
) -> None:
    with _Index(_index_files(tmp_path, tampered=True)) as index:
        env = fresh_env(tmp_path, PYTHONPATH=str(no_pip), PIP_INDEX_URL=index.url)
        done = run_py(sys.executable, scratch, ["uv", "--version"], env)

    assert done.returncode == 1
    assert "sha256 differs from the index's" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: uv is needed")
    assert not private_binary(scratch).exists()
    assert sorted(p.name for p in (scratch / ".tools").iterdir()) == [".gitignore"]


# --- which uv, and what it is asked to run ----------------------------------------------------


def _place_private_uv(repo: Path, label: str = "private") -> None:
    binary = private_binary(repo)
    binary.parent.mkdir(parents=True)
    binary.write_text(fake_uv_script(label))
    binary.chmod(0o755)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["test"], "run --frozen pytest"),
        (["test", "-q", "-k", "deploy"], "run --frozen pytest -q -k deploy"),
        (["demo"], "run --frozen --no-dev --group sandbox python -m app demo"),
        (
            ["demo", "--leads", "6"],
            "run --frozen --no-dev --group sandbox python -m app demo --leads 6",
        ),
        (["local"], "run --frozen --no-dev --group sandbox python -m app local"),
        (["ruff", "check", "."], "run --frozen ruff check ."),
        (["mypy"], "run --frozen mypy"),
        (["pytest", "tests/sql"], "run --frozen pytest tests/sql"),
        (["python", "-m", "bench.scale"], "run --frozen python -m bench.scale"),
        (["python", "-m", "app", "migrate"], "run --frozen --no-dev python -m app migrate"),
        (["python", "-m", "app", "serve"], "run --frozen --no-dev python -m app serve"),
        (["python", "-m", "app", "status"], "run --frozen --no-dev python -m app status"),
        (["uv", "lock", "--check"], "lock --check"),
    ],
)
def test_commands_become_uv_run_frozen_in_the_checkout_with_this_python(
    scratch: Path, tmp_path: Path, args: list[str], expected: str
) -> None:
    _place_private_uv(scratch)
    chromium = _fake_chromium(tmp_path)  # the test command's arguments do not depend on one
    done = run_py(sys.executable, scratch, args, fresh_env(tmp_path, CHROMIUM=str(chromium)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"fake-uv private args: {expected}",
        f"fake-uv UV_PYTHON={sys.executable}",
        f"fake-uv cwd={scratch}",
    ]
    assert done.stderr == ""  # a uv already there: nothing to say


def _fake_chromium(folder: Path, name: str = "chromium") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    binary = folder / name
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    return binary


def _run_test_command(
    scratch: Path, tmp_path: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`python3 run.py test -q` with a private fake uv that also prints CHROMIUM."""
    binary = private_binary(scratch)
    binary.parent.mkdir(parents=True)
    binary.write_text(fake_uv_script("private") + 'echo "fake-uv CHROMIUM=$CHROMIUM"\n')
    binary.chmod(0o755)
    return run_py(sys.executable, scratch, ["test", "-q"], fresh_env(tmp_path) | env)


def test_the_test_command_leaves_out_the_browser_tests_in_one_line_without_a_chromium(
    scratch: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "no-chromium-here"
    empty.mkdir()
    done = _run_test_command(scratch, tmp_path, {"PATH": str(empty)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == (
        "fake-uv private args: run --frozen pytest --deselect tests/browser -q"
    )
    assert done.stderr.splitlines() == [
        "run.py: browser tests (tests/browser) left out: no Chromium on PATH (chromium, "
        "chromium-browser) and CHROMIUM is not set; install one (apt-get install chromium) "
        "or set CHROMIUM to run them"
    ]


def test_a_chromium_that_is_not_there_is_named_when_the_browser_tests_are_left_out(
    scratch: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "chromium"
    done = _run_test_command(scratch, tmp_path, {"CHROMIUM": str(missing)})
    assert "--deselect tests/browser" in done.stdout.splitlines()[0]
    assert len(done.stderr.splitlines()) == 1
    assert f"left out: CHROMIUM={missing} is not an executable file" in done.stderr


@pytest.mark.parametrize("name", ["chromium", "chromium-browser"])
def test_a_chromium_on_path_runs_the_browser_tests_and_is_handed_on(
    scratch: Path, tmp_path: Path, name: str
) -> None:
    chromium = _fake_chromium(tmp_path / "bin", name)
    done = _run_test_command(scratch, tmp_path, {"PATH": str(chromium.parent)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "fake-uv private args: run --frozen pytest -q"
    assert done.stdout.splitlines()[-1] == f"fake-uv CHROMIUM={chromium}"
    assert done.stderr == ""


DEV_ONLY = {"pytest", "pytest-asyncio", "pytest-timeout", "pytest-xdist", "hypothesis"}
DEV_ONLY |= {"ruff", "mypy", "pyyaml", "types-pyyaml", "playwright"}


def installed_by(args: list[str]) -> set[str]:
    """The packages `python3 run.py ARGS` installs: the real uv resolves the real uv.lock
    with the group options run.py picked (`uv export` takes the same ones as `uv run`)."""
    uv_args = run.uv_arguments(args)
    assert uv_args[:2] == ["run", "--frozen"]
    options: list[str] = []
    for arg in uv_args[2:]:
        if not (arg.startswith("--") or options[-1:] == ["--group"]):
            break
        options.append(arg)
    exported = subprocess.run(
        [*run.find_or_install_uv(), "export", "--frozen", "--no-hashes", *options],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    ).stdout
    return {
        line.split("==")[0].strip().lower()
        for line in exported.splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    }


@pytest.mark.parametrize(
    "args",
    [
        ["demo"],
        ["local"],
        ["python", "-m", "app", "migrate"],
        ["python", "-m", "app", "serve"],
        ["python", "-m", "app", "status"],
    ],
)
def test_the_run_paths_install_the_runtime_without_the_dev_group(args: list[str]) -> None:
    packages = installed_by(args)
    assert {"fastapi", "uvicorn", "asyncpg", "supabase"} <= packages
    assert not packages & DEV_ONLY, sorted(packages & DEV_ONLY)
    # The embedded Postgres only for the commands that start one.
    assert ("pgserver" in packages) == (args[0] in ("demo", "local"))


@pytest.mark.parametrize("args", [["test"], ["ruff", "check", "."], ["mypy"]])
def test_the_test_command_and_the_dev_tools_bring_the_dev_group(args: list[str]) -> None:
    assert DEV_ONLY | {"pgserver"} <= installed_by(args)


def test_an_older_uv_on_path_is_not_used(
    scratch: Path, wheels: Path, tmp_path: Path, externally_managed_home: tuple[str, Path]
) -> None:
    python, home = externally_managed_home
    old_bin = tmp_path / "old-bin"
    old_bin.mkdir()
    (old_bin / "uv").write_text(fake_uv_script("old", version="0.4.0"))
    (old_bin / "uv").chmod(0o755)
    env = fresh_env(tmp_path, wheels, PYTHONHOME=str(home), PATH=f"{old_bin}:/usr/bin:/bin")
    if probe(python, "import pip", env).returncode != 0:
        pytest.skip("the base interpreter has no pip")

    done = run_py(python, scratch, ["uv", "--version"], env)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"uv {UV} (from-pip)"


def test_help_and_no_arguments(scratch: Path, tmp_path: Path) -> None:
    assert run_py(sys.executable, scratch, ["--help"], fresh_env(tmp_path)).returncode == 0
    bare = run_py(sys.executable, scratch, [], fresh_env(tmp_path))
    assert bare.returncode == 2
    assert "usage: python3 run.py demo | local | test" in bare.stdout
    assert not (scratch / ".tools").exists()  # nothing installed just to print help


# --- the wheel for this machine ---------------------------------------------------------------

PYPI_NAMES = [
    f"uv-{UV}-py3-none-linux_armv6l.whl",
    f"uv-{UV}-py3-none-macosx_10_12_x86_64.whl",
    f"uv-{UV}-py3-none-macosx_11_0_arm64.whl",
    f"uv-{UV}-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64.whl",
    f"uv-{UV}-py3-none-manylinux_2_17_armv7l.manylinux2014_armv7l.whl",
    f"uv-{UV}-py3-none-manylinux_2_17_i686.manylinux2014_i686.whl",
    f"uv-{UV}-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    f"uv-{UV}-py3-none-manylinux_2_28_aarch64.whl",
    f"uv-{UV}-py3-none-musllinux_1_1_x86_64.whl",
    f"uv-{UV}-py3-none-win32.whl",
    f"uv-{UV}-py3-none-win_amd64.whl",
    f"uv-{UV}-py3-none-win_arm64.whl",
    f"uv-{UV}.tar.gz",
]


@pytest.mark.parametrize(
    ("system", "machine", "libc", "expected"),
    [
        ("Linux", "x86_64", ("glibc", "2.36"), "manylinux_2_17_x86_64.manylinux2014_x86_64"),
        ("Linux", "x86_64", ("", ""), "musllinux_1_1_x86_64"),
        (
            "Linux",
            "aarch64",
            ("glibc", "2.31"),
            "manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64",
        ),
        ("Linux", "armv7l", ("glibc", "2.28"), "manylinux_2_17_armv7l.manylinux2014_armv7l"),
        ("Linux", "armv6l", ("glibc", "2.28"), "linux_armv6l"),
        ("Linux", "x86_64", ("glibc", "2.12"), None),  # older than manylinux2014
        ("Windows", "AMD64", ("", ""), "win_amd64"),
        ("Windows", "ARM64", ("", ""), "win_arm64"),
        ("Darwin", "arm64", ("", ""), "macosx_11_0_arm64"),
        ("Darwin", "x86_64", ("", ""), "macosx_10_12_x86_64"),
        ("FreeBSD", "amd64", ("", ""), None),
    ],
)
def test_the_wheel_picked_for_each_platform(
    system: str, machine: str, libc: tuple[str, str], expected: str | None
) -> None:
    picked = run.pick_wheel(PYPI_NAMES, system, machine, libc)
    assert picked == (f"uv-{UV}-py3-none-{expected}.whl" if expected else None)


def test_run_py_reads_on_old_pythons_so_it_can_say_it_needs_3_11() -> None:
    source = (ROOT / "run.py").read_text()
    ast.parse(source, feature_version=(3, 8))
    assert run.MIN_PYTHON == (3, 11)


# --- the README's commands, CI, the image ----------------------------------------------------


def readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.DOTALL)
    assert block is not None
    assert readme.index(block.group(0)) < 40  # the first lines
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_opens_with_two_commands_that_need_python_3_11() -> None:
    assert readme_commands() == ["python3 run.py demo", "python3 run.py test"]
    assert "Python 3.11 or newer" in (ROOT / "README.md").read_text()[:1500]


def test_ci_runs_exactly_the_readme_test_command_then_lint_and_types() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    test_command = readme_commands()[1]
    assert test_command in lines
    after = lines[lines.index(test_command) + 1 :]
    assert after == [
        "python3 run.py ruff check .",
        "python3 run.py ruff format --check .",
        "python3 run.py mypy",
    ]


def test_the_dockerfile_pins_the_same_uv_as_run_py() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.findall(r"pip install [^\n]*\buv==([\w.]+)", dockerfile) == [UV]
