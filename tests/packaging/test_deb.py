"""The Debian package (`make deb`, packaging/): built from this checkout, checked inside out, then
installed, upgraded over itself, removed and purged on this machine, which is left as it was.

Needs Debian (dpkg-deb, apt-get; lintian from `make system-deps`) and root for the installation;
elsewhere it skips, which fails under CI=true (tests/support/real_parts.py). It refuses, rather
than destroys, a machine where syncd is installed or its user or directories exist already.
"""

from __future__ import annotations

import fcntl
import grp
import hashlib
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements" / "runtime.txt"
PROJECT_VERSION: str = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))[
    "project"
]["version"]

VENV = Path("/opt/syncd/venv")
CONFIG = Path("/etc/syncd/syncd.yaml")
STATE = Path("/var/lib/syncd/state.db")
UNITS = ("syncd.service", "syncd-once.service", "syncd.timer")
DSH_STATE = Path("/var/lib/systemd/deb-systemd-helper-enabled")
# Everything of syncd's that the package, its scripts or this test put on the machine.
FOOTPRINT = (
    Path("/etc/syncd"),
    Path("/etc/logrotate.d/syncd"),
    Path("/var/lib/syncd"),
    Path("/var/log/syncd"),
    Path("/opt/syncd"),
    Path("/usr/bin/syncd"),
    Path("/usr/lib/syncd"),
    Path("/usr/share/syncd"),
    Path("/usr/share/doc/syncd"),
    Path("/usr/share/man/man1/syncd.1.gz"),
    Path("/usr/share/lintian/overrides/syncd"),
    *(Path("/lib/systemd/system") / unit for unit in UNITS),
    DSH_STATE / "syncd.service.dsh-also",
    DSH_STATE / "syncd.timer.dsh-also",
)
NEXT_STEPS = "Next steps, as root:"

ON_DEBIAN = Path("/etc/debian_version").is_file() and all(
    shutil.which(tool) for tool in ("dpkg-deb", "apt-get", "make")
)
pytestmark = pytest.mark.skipif(not ON_DEBIAN, reason="not Debian: no dpkg-deb, apt-get or make")


# ------------------------------------------------------------------------------------- helpers


def run(*command: str | Path, check: bool = True) -> str:
    """stdout and stderr together; a failure shows them."""
    result = subprocess.run(
        [str(part) for part in command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"},
        timeout=240,
        check=False,
    )
    if check:
        assert result.returncode == 0, f"{' '.join(map(str, command))}:\n{result.stdout}"
    return result.stdout


def apt_get(*args: str | Path) -> str:
    # Waits for a dpkg lock held by anything else on the machine instead of failing at once.
    return run("apt-get", "-o", "DPkg::Lock::Timeout=120", "-y", *args)


def as_syncd(*command: str | Path) -> str:
    """A command as the service user, with a plain environment, as an admin's runuser gives."""
    return run(
        "runuser", "-u", "syncd", "--", "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", *command
    )


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, tuple[str, set[str]]]:
    """The runtime lock: each package's version and the hashes of its files."""
    pins: dict[str, tuple[str, set[str]]] = {}
    for block in re.split(r"\n(?=\S)", LOCK.read_text(encoding="utf-8")):
        pin = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if pin:
            hashes = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
            pins[normalized(pin.group(1))] = (pin.group(2), hashes)
    return pins


def owner_and_mode(path: Path) -> tuple[str, str, str]:
    info = path.stat()
    owner = pwd.getpwuid(info.st_uid).pw_name
    return owner, grp.getgrgid(info.st_gid).gr_name, oct(stat.S_IMODE(info.st_mode))


def debian_python() -> str:
    return run(
        "/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"
    ).strip()


def package_status() -> str:
    """dpkg's view of syncd: 'installed', 'config-files' (removed), 'not-installed', ..."""
    query = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Status}", "syncd"],
        capture_output=True,
        text=True,
        check=False,
    )
    # dpkg forgets a purged package: "no packages found matching syncd", exit 1.
    return query.stdout.strip() if query.returncode == 0 else "not-installed"


# ------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def machine_lock() -> Iterator[None]:
    """One packaging run at a time on this machine: a second `make test` here would build into
    the same dist/ and install the same package."""
    lock_dir = Path("/run/lock") if Path("/run/lock").is_dir() else Path(tempfile.gettempdir())
    with (lock_dir / "syncd-packaging-test.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="module")
def deb(machine_lock: None) -> Path:
    """`make deb`, as an admin runs it; the package is the one it says it built."""
    out = run("make", "--no-print-directory", "-C", REPO, "deb")
    built = re.search(r"^built (dist/syncd_\S+\.deb)$", out, re.M)
    assert built, out
    return REPO / built.group(1)


@pytest.fixture(scope="module")
def unpacked(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's files under ./, its control files under ./DEBIAN."""
    root = tmp_path_factory.mktemp("deb")
    run("dpkg-deb", "-x", deb, root)
    run("dpkg-deb", "-e", deb, root / "DEBIAN")
    return root


@pytest.fixture
def clean_machine() -> Iterator[None]:
    """Root, no trace of syncd before the test, and none after it, even when it fails."""
    if os.geteuid() != 0:
        pytest.skip("installing the package needs root")
    found = [str(path) for path in FOOTPRINT if path.exists() or path.is_symlink()]
    found += [str(p) for p in Path("/etc/systemd/system").rglob("syncd*")]
    for name, lookup in (("user", pwd.getpwnam), ("group", grp.getgrnam)):
        try:
            lookup("syncd")
            found.append(f"the {name} syncd")
        except KeyError:
            pass
    if package_status() != "not-installed":
        found.append(f"the package syncd ({package_status()})")
    if found:
        pytest.skip(
            "this machine has syncd on it already, which installing and purging the package "
            f"would change or destroy: {', '.join(found)}. Remove it (a leftover of a run as "
            "root?) or run this test on another machine"
        )
    try:
        yield
    finally:
        if package_status() != "not-installed":
            run("dpkg", "--purge", "syncd", check=False)
        for path in FOOTPRINT:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        run("userdel", "syncd", check=False)
        run("groupdel", "syncd", check=False)


# -------------------------------------------------------------------------------- the package


def test_the_package_is_the_projects_version_for_this_machine(deb: Path) -> None:
    fields = dict(
        re.findall(r"^(\S+): (.*)$", run("dpkg-deb", "-f", deb), re.M),
    )
    assert fields["Package"] == "syncd"
    # Pre-releases get a tilde (1.0rc1 -> 1.0~rc1), so that they sort before the release.
    assert fields["Version"].replace("~~", ".").replace("~", "") == PROJECT_VERSION
    assert fields["Architecture"] == run("dpkg", "--print-architecture").strip()
    # The bundled compiled wheels fit one Python minor version: Debian's, that postinst uses.
    major, minor = debian_python().split(".")
    depends = [part.strip() for part in fields["Depends"].split(",")]
    assert f"python3 (>= {major}.{minor}~)" in depends
    assert f"python3 (<< {major}.{int(minor) + 1})" in depends
    assert {"python3-venv", "adduser"} <= set(depends)


def test_the_package_carries_the_units_the_configs_and_the_locked_wheels(unpacked: Path) -> None:
    for unit in UNITS:
        assert (unpacked / "lib/systemd/system" / unit).read_bytes() == (
            REPO / "systemd" / unit
        ).read_bytes()
    logrotate = unpacked / "etc/logrotate.d/syncd"
    assert logrotate.read_bytes() == (REPO / "systemd/syncd.logrotate").read_bytes()
    assert (unpacked / "DEBIAN/conffiles").read_text().split() == ["/etc/logrotate.d/syncd"]
    for example in (REPO / "config").iterdir():
        shipped = unpacked / "usr/share/doc/syncd/examples" / example.name
        assert shipped.read_bytes() == example.read_bytes()
    assert os.readlink(unpacked / "usr/bin/syncd") == "/opt/syncd/venv/bin/syncd"
    # The venv is postinst's: the package itself puts nothing in /opt (Debian policy).
    assert not (unpacked / "opt").exists()

    wheels = sorted((unpacked / "usr/lib/syncd/wheels").glob("*.whl"))
    bundled = {normalized(w.name.split("-")[0]): w for w in wheels}
    pins = locked()
    assert set(bundled) == {*pins, "syncd"}
    assert bundled["syncd"].name == f"syncd-{PROJECT_VERSION}-py3-none-any.whl"
    python_tag = "cp" + debian_python().replace(".", "")
    for name, (version, hashes) in pins.items():
        wheel = bundled[name]
        assert wheel.name.split("-")[1] == version, wheel.name
        # The very files the lock names (none rebuilt), for Debian's Python where compiled.
        assert hashlib.sha256(wheel.read_bytes()).hexdigest() in hashes, wheel.name
        tags = wheel.name.removesuffix(".whl").split("-")[-3:]
        assert tags[0].startswith(("py", python_tag)), wheel.name
    requirements = (unpacked / "usr/lib/syncd/requirements.txt").read_text().splitlines()
    assert sorted(requirements) == sorted(
        f"{w.name.split('-')[0]}=={w.name.split('-')[1]} "
        f"--hash=sha256:{hashlib.sha256(w.read_bytes()).hexdigest()}"
        for w in wheels
    )


def test_every_file_is_roots_and_every_script_is_strict_posix_sh(deb: Path, unpacked: Path) -> None:
    listing = run("dpkg-deb", "-c", deb).splitlines()
    assert listing and all(" root/root " in line for line in listing)
    for script in ("postinst", "prerm", "postrm"):
        path = unpacked / "DEBIAN" / script
        assert path.read_bytes() == (REPO / "packaging" / script).read_bytes()
        assert path.stat().st_mode & 0o777 == 0o755
        text = path.read_text()
        assert text.startswith("#!/bin/sh\n") and "\nset -e\n" in text, script
        run("sh", "-n", path)
        # Nothing is enabled or started by the package; only a running daemon is restarted.
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        assert not re.search(r"systemctl\s.*\b(enable|start)\b|deb-systemd-invoke\s+start", code)
    postinst = (unpacked / "DEBIAN/postinst").read_text()
    assert re.search(
        r"if \[ -d /run/systemd/system \]; then.*deb-systemd-invoke try-restart syncd\.service",
        postinst,
        re.S,
    )
    prerm = (unpacked / "DEBIAN/prerm").read_text()
    assert "deb-systemd-invoke stop syncd.timer syncd-once.service syncd.service" in prerm


def test_lintian_reports_no_errors(deb: Path) -> None:
    if shutil.which("lintian") is None:
        pytest.skip("lintian not installed (make system-deps installs it)")
    report = run("lintian", deb, check=False)
    assert not [line for line in report.splitlines() if line.startswith("E:")], report


# ----------------------------------------------------------------------- on a machine, for real


def test_install_upgrade_remove_and_purge(deb: Path, clean_machine: None) -> None:
    # Install: the user, the directories, the venv, and the admin's next steps; nothing runs.
    out = apt_get("install", deb)
    assert NEXT_STEPS in out, out
    for step in ("  1. ", "  2. ", "  3. "):
        assert step in out.split(NEXT_STEPS)[1], out
    user = pwd.getpwnam("syncd")
    assert (user.pw_dir, user.pw_shell) == ("/var/lib/syncd", "/usr/sbin/nologin")
    assert user.pw_uid < 1000 and grp.getgrgid(user.pw_gid).gr_name == "syncd"
    expected_modes = {
        Path("/etc/syncd"): ("root", "syncd", "0o750"),
        Path("/etc/syncd/credentials"): ("root", "root", "0o700"),
        Path("/var/lib/syncd"): ("syncd", "syncd", "0o700"),
        Path("/var/log/syncd"): ("syncd", "syncd", "0o750"),
    }
    assert {path: owner_and_mode(path) for path in expected_modes} == expected_modes
    assert os.readlink("/usr/bin/syncd") == str(VENV / "bin/syncd")
    assert "home = /usr/bin\n" in (VENV / "pyvenv.cfg").read_text()
    for unit in UNITS:
        assert (Path("/lib/systemd/system") / unit).is_file()
    assert not list(Path("/etc/systemd/system").rglob("syncd*"))  # nothing enabled
    # The venv holds the lock, syncd and nothing else (not even Debian's pip and setuptools).
    freeze = run(VENV / "bin/python", "-m", "pip", "freeze", "--all").split()
    frozen = {normalized(name): version for name, version in (p.split("==") for p in freeze)}
    assert frozen == {name: version for name, (version, _) in locked().items()} | {
        "syncd": PROJECT_VERSION
    }

    assert as_syncd("/usr/bin/syncd", "--version").strip() == f"syncd {PROJECT_VERSION}"
    run("logrotate", "--debug", "/etc/logrotate.d/syncd")  # parses, and the user it names exists

    # The admin's config, from the annotated example, against the bundled sample export.
    example = Path("/usr/share/doc/syncd/examples/syncd.example.yaml").read_text()
    export = "path: /var/lib/syncd-import/hr-export.csv"
    assert export in example
    written = example.replace(export, "path: /usr/share/doc/syncd/examples/sample-hr-export.csv")
    CONFIG.write_text(written)
    token = Path("/etc/syncd/hybridbox-token")  # the example's token_file
    token.write_text("a-test-token-that-is-never-sent\n")
    for path in (CONFIG, token):
        shutil.chown(path, "root", "syncd")
        path.chmod(0o640)
    validate = as_syncd("/usr/bin/syncd", "--config", CONFIG, "validate", "--offline")
    assert "source: read 5 sample record(s)" in validate and "valid" in validate, validate
    STATE.write_bytes(b"the admin's data")  # stands in for a state the daemon wrote
    shutil.chown(STATE, "syncd", "syncd")
    STATE.chmod(0o600)

    # Upgrade over itself: a new venv; the config, the secrets and the state stay.
    (VENV / "left-by-the-old-version").touch()
    out = apt_get("install", "--reinstall", deb)
    assert NEXT_STEPS not in out, out  # the config exists now
    assert not (VENV / "left-by-the-old-version").exists()
    assert as_syncd("/usr/bin/syncd", "--version").strip() == f"syncd {PROJECT_VERSION}"
    assert CONFIG.read_text() == written and STATE.read_bytes() == b"the admin's data"
    assert {path: owner_and_mode(path) for path in expected_modes} == expected_modes

    # Remove: the program goes, the admin's files stay.
    apt_get("remove", "syncd")
    assert package_status() == "config-files"
    for gone in (
        Path("/opt/syncd"),
        Path("/usr/bin/syncd"),
        Path("/lib/systemd/system/syncd.service"),
    ):
        assert not (gone.exists() or gone.is_symlink()), gone
    for kept in (
        CONFIG,
        token,
        Path("/etc/syncd/credentials"),
        STATE,
        Path("/etc/logrotate.d/syncd"),
    ):
        assert kept.exists(), kept

    # Purge: the admin's files go too, and the admin is told that the state went with them.
    out = apt_get("purge", "syncd")
    assert package_status() == "not-installed"
    assert f"removed the state {STATE}" in out and "back it up" in out, out
    assert [path for path in FOOTPRINT if path.exists() or path.is_symlink()] == []
    pwd.getpwnam("syncd")  # Debian keeps system users; clean_machine removes this one
