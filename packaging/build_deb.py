"""Build dist/syncd_<version>_<arch>.deb from this checkout: what `make deb` runs.

packaging/README.md says what the package holds and why it is put together this way. This script
uses the standard library only and runs on Debian's own python3; it needs dpkg-deb, python3-venv
and PyPI (for the wheels of the lock, kept in build/deb between builds), and no root.
"""

from __future__ import annotations

import email.message
import email.parser
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGING = REPO / "packaging"
LOCK = REPO / "requirements" / "runtime.txt"
BUILD = REPO / "build" / "deb"
DIST = REPO / "dist"

# The interpreter postinst makes /opt/syncd/venv with. The wheels are chosen by a pip running on
# it (its ABI, e.g. cp311, and this machine's architecture), never by the Python that runs this
# script or the developer's venv, which may be another build (pyenv's, say).
DEBIAN_PYTHON = Path("/usr/bin/python3")

# Where things go in the package (paths without the leading slash, as in the archive).
WHEELS = "usr/lib/syncd/wheels"
REQUIREMENTS = "usr/lib/syncd/requirements.txt"
DOC = "usr/share/doc/syncd"
# What postinst prints until /etc/syncd/syncd.yaml exists. A file rather than text in the script:
# lintian would read its commands (`systemctl enable`, a bash here-string) as the script's own.
NEXT_STEPS = "usr/share/syncd/next-steps"
UNITS = ("syncd.service", "syncd-once.service", "syncd.timer")
MAINTAINER_SCRIPTS = ("postinst", "prerm", "postrm")
LOGROTATE = "etc/logrotate.d/syncd"
# The units run /opt/syncd/venv/bin/syncd; the command on the PATH is a link to it.
SYNCD_LINK = ("usr/bin/syncd", "/opt/syncd/venv/bin/syncd")

DESCRIPTION = """\
provision Hybridbox mailboxes for new hires
 syncd reads people from an HR system's CSV export, OpenLDAP or Active
 Directory on a schedule, finds the new hires by comparing with a local SQLite
 state, and creates exactly one Hybridbox mailbox for each of them through
 Hybridbox's bulk API.
 .
 This package carries syncd and its Python dependencies as wheels (the versions
 of the project's lock) and installs them into /opt/syncd/venv, offline. It
 ships the systemd units syncd.service (the daemon) and syncd-once.service with
 syncd.timer, but enables and starts none of them."""


class BuildError(Exception):
    """A reason the package cannot be built, said as one line for the admin."""


def run(*command: str | Path, env: dict[str, str] | None = None) -> str:
    """Run a command; its stderr reaches the terminal, its stdout is returned."""
    result = subprocess.run(
        [str(part) for part in command],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(
            f"{Path(str(command[0])).name} failed (exit {result.returncode}): see above"
        )
    return result.stdout


def check_tools() -> None:
    if shutil.which("dpkg-deb") is None:
        raise BuildError("dpkg-deb not found: build the package on Debian (apt-get install dpkg)")
    if not DEBIAN_PYTHON.is_file():
        raise BuildError(f"{DEBIAN_PYTHON} not found: apt-get install python3 python3-venv")
    probe = subprocess.run(
        [DEBIAN_PYTHON, "-c", "import ensurepip, venv"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        raise BuildError(f"{DEBIAN_PYTHON} cannot make a venv: apt-get install python3-venv")
    if not LOCK.is_file():
        raise BuildError(f"{LOCK.relative_to(REPO)} is missing: run `make lock`")


def source_date_epoch() -> int:
    """The time the package says it was made: $SOURCE_DATE_EPOCH, else the last commit's time.

    So that two builds of one commit give the same changelog, wheel and archive timestamps.
    """
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        return int(os.environ["SOURCE_DATE_EPOCH"])
    git = subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%ct"],
        capture_output=True,
        text=True,
        check=False,
    )
    return (
        int(git.stdout)
        if git.returncode == 0 and git.stdout.strip().isdigit()
        else int(time.time())
    )


def build_env(epoch: int) -> dict[str, str]:
    return {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}


def pip_for_debian_python(python_version: str) -> list[str]:
    """A pip running on Debian's python3, from a venv of its own (kept between builds)."""
    venv = BUILD / f"pip-python{python_version}"
    if not (venv / "bin" / "python").exists():
        shutil.rmtree(venv, ignore_errors=True)
        run(DEBIAN_PYTHON, "-m", "venv", venv)
    return [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]


def build_syncd_wheel(pip: list[str], env: dict[str, str]) -> Path:
    """syncd's own wheel, from a fresh copy of the checkout's sources.

    setuptools keeps a build/lib in the source tree it builds, where a module deleted since an
    earlier build would linger and slip into the wheel; a fresh copy has none.
    """
    source = BUILD / "src"
    out = BUILD / "syncd-wheel"
    for stale in (source, out):
        shutil.rmtree(stale, ignore_errors=True)
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "syncd", source / "syncd", ignore=shutil.ignore_patterns("__pycache__"))
    run(*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", out, source, env=env)
    (wheel,) = out.glob("syncd-*.whl")
    return wheel


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(archive.read(name).decode("utf-8"))


def project_version(wheel: Path) -> str:
    """The version in pyproject.toml (as built into the wheel), which `syncd --version` must say."""
    version = str(wheel_metadata(wheel)["Version"])
    with zipfile.ZipFile(wheel) as archive:
        init = archive.read("syncd/__init__.py").decode("utf-8")
    said = re.search(r'^__version__ = "([^"]+)"$', init, re.M)
    if said is None or said.group(1) != version:
        shown = said.group(1) if said else "nothing"
        raise BuildError(
            f"pyproject.toml says version {version} but syncd/__init__.py's __version__ says "
            f"{shown} (what `syncd --version` prints): make them agree"
        )
    return version


def debian_version(version: str) -> str:
    """PEP 440 to Debian, in the same order: a tilde sorts before anything, even the end.

    1.0rc1 -> 1.0~rc1 (before 1.0), 1.0.dev2 -> 1.0~~dev2 (before 1.0~a1), 1!2.0 -> 1:2.0.
    """
    epoch, _, rest = version.rpartition("!")
    public, plus, local = rest.partition("+")
    public = re.sub(r"[.-]?(a|b|rc)(\d*)", r"~\1\2", public)
    public = re.sub(r"[.-]?dev(\d*)", r"~~dev\1", public)
    return (f"{epoch}:" if epoch else "") + public + plus + local


def wheelhouse(pip: list[str], key: str) -> Path:
    """The runtime lock's wheels, each checked against the lock's hashes.

    A package released only as a source distribution would be built into a wheel here. Kept
    between builds while the lock, Debian's Python and the architecture are the same.
    """
    house = BUILD / "wheelhouse"
    stamp = house / ".key"
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == key:
        return house
    fresh = BUILD / "wheelhouse.new"
    shutil.rmtree(fresh, ignore_errors=True)
    shutil.rmtree(house, ignore_errors=True)
    run(*pip, "wheel", "--quiet", "--require-hashes", "-r", LOCK, "--wheel-dir", fresh)
    (fresh / ".key").write_text(key, encoding="utf-8")
    fresh.rename(house)
    return house


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wheel_pin(wheel: Path) -> str:
    """`name==version --hash=sha256:...` for exactly this file (the wheel name's first parts)."""
    name, version = wheel.name.split("-")[:2]
    return f"{name}=={version} --hash=sha256:{sha256(wheel)}"


def licence(wheel: Path) -> str:
    meta = wheel_metadata(wheel)
    if meta["License-Expression"]:
        return str(meta["License-Expression"])
    declared = str(meta["License"] or "").strip()
    if declared and "\n" not in declared and len(declared) <= 60:
        return declared
    classifiers = [
        str(c).split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if "License ::" in c
    ]
    return ", ".join(classifiers) or "see its licence file"


def copyright_text(wheels: list[Path]) -> str:
    lines = [
        f"  {wheel_metadata(w)['Name']} {wheel_metadata(w)['Version']}: {licence(w)}"
        for w in wheels
    ]
    return (PACKAGING / "copyright").read_text(encoding="utf-8") + "\n".join(lines) + "\n"


def changelog_text(version: str, epoch: int) -> str:
    git = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    origin = f"commit {git.stdout.strip()}" if git.returncode == 0 else "a checkout outside git"
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(epoch))
    return (
        f"syncd ({version}) unstable; urgency=medium\n\n"
        f"  * syncd {version}, built from {origin}.\n"
        "    The project's history is its git log.\n\n"
        f" -- {maintainer()}  {date}\n"
    )


def maintainer() -> str:
    """Whoever builds the package, as Debian's tools ask: $DEBFULLNAME <$DEBEMAIL>."""
    name = os.environ.get("DEBFULLNAME") or "syncd maintainers"
    mail = os.environ.get("DEBEMAIL") or "syncd@example.org"
    return f"{name} <{mail}>"


def gzipped(text: str, target: Path) -> None:
    """gzip -9n: no name and no time in the header, as Debian policy asks for /usr/share/doc."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        target.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=raw, mtime=0) as packed,
    ):
        packed.write(text.encode("utf-8"))


def install(source: Path, target: Path, mode: int = 0o644) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(mode)


def assemble(root: Path, syncd_wheel: Path, house: Path, version: str, epoch: int) -> list[Path]:
    """The package's files under root; returns the bundled wheels, syncd's last."""
    wheels = [*sorted(house.glob("*.whl")), syncd_wheel]
    if not any(wheel.name.startswith("pip-") for wheel in wheels):
        # postinst installs the venv with the locked pip (sqlite-utils depends on pip today).
        raise BuildError(f"{LOCK.relative_to(REPO)} has no pip: add pip to the lock (make lock)")
    for wheel in wheels:
        install(wheel, root / WHEELS / wheel.name)
    # postinst installs exactly these files: their own hashes, which the lock's vouched for.
    (root / REQUIREMENTS).write_text("".join(f"{wheel_pin(w)}\n" for w in wheels), encoding="utf-8")
    for unit in UNITS:
        install(REPO / "systemd" / unit, root / "lib/systemd/system" / unit)
    install(REPO / "systemd" / "syncd.logrotate", root / LOGROTATE)
    for example in sorted((REPO / "config").iterdir()):
        install(example, root / DOC / "examples" / example.name)
    doc = root / DOC
    gzipped((REPO / "README.md").read_text(encoding="utf-8"), doc / "README.md.gz")
    gzipped(
        (REPO / "systemd" / "README.md").read_text(encoding="utf-8"), doc / "README.systemd.md.gz"
    )
    gzipped(changelog_text(version, epoch), doc / "changelog.gz")
    manual = (PACKAGING / "syncd.1").read_text(encoding="utf-8")
    gzipped(manual, root / "usr/share/man/man1/syncd.1.gz")
    (doc / "copyright").write_text(copyright_text(wheels), encoding="utf-8")
    install(PACKAGING / "next-steps", root / NEXT_STEPS)
    install(PACKAGING / "lintian-overrides", root / "usr/share/lintian/overrides/syncd")
    link, target = SYNCD_LINK
    (root / link).parent.mkdir(parents=True, exist_ok=True)
    (root / link).symlink_to(target)
    return wheels


def installed_size_kib(root: Path) -> int:
    """As dpkg-gencontrol counts: each file's size in KiB rounded up, 1 per directory or link."""
    total = 0
    for path in root.rglob("*"):
        if path.is_symlink() or path.is_dir():
            total += 1
        else:
            total += -(-path.stat().st_size // 1024)
    return total


def write_control(root: Path, version: str, arch: str, python_version: str) -> None:
    control = root / "DEBIAN"
    control.mkdir(mode=0o755)
    major, minor = python_version.split(".")
    # The wheels of compiled packages (pydantic-core, PyYAML) fit this Python minor version only.
    python = f"python3 (>= {python_version}~), python3 (<< {major}.{int(minor) + 1})"
    size = installed_size_kib(root)
    fields = {
        "Package": "syncd",
        "Version": version,
        "Architecture": arch,
        "Maintainer": maintainer(),
        "Installed-Size": str(size),
        # deb-systemd-helper and deb-systemd-invoke (init-system-helpers) are Essential.
        "Depends": f"{python}, python3-venv, adduser",
        "Recommends": "logrotate",
        "Section": "admin",
        "Priority": "optional",
        "Description": DESCRIPTION,
    }
    (control / "control").write_text(
        "".join(f"{key}: {value}\n" for key, value in fields.items()), encoding="utf-8"
    )
    (control / "conffiles").write_text(f"/{LOGROTATE}\n", encoding="utf-8")
    # Every file but the conffiles, whose sums dpkg keeps itself (as dh_md5sums does).
    sums = [
        f"{md5(path)}  {path.relative_to(root)}\n"
        for path in sorted(root.rglob("*"))
        if path.is_file()
        and not path.is_symlink()
        and path.relative_to(root).parts[0] != "DEBIAN"
        and path != root / LOGROTATE
    ]
    (control / "md5sums").write_text("".join(sums), encoding="utf-8")
    for name in ("control", "conffiles", "md5sums"):
        (control / name).chmod(0o644)
    for script in MAINTAINER_SCRIPTS:
        install(PACKAGING / script, control / script, mode=0o755)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def build() -> Path:
    check_tools()
    arch = run("dpkg", "--print-architecture").strip()
    python_version = run(
        DEBIAN_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"
    ).strip()
    epoch = source_date_epoch()
    env = build_env(epoch)
    pip = pip_for_debian_python(python_version)

    syncd_wheel = build_syncd_wheel(pip, env)
    version = debian_version(project_version(syncd_wheel))
    house = wheelhouse(pip, f"{sha256(LOCK)} python{python_version} {arch}\n")

    root = BUILD / "root"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    assemble(root, syncd_wheel, house, version, epoch)
    write_control(root, version, arch, python_version)
    for path in [root, *root.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
        os.utime(path, (epoch, epoch), follow_symlinks=False)

    DIST.mkdir(exist_ok=True)
    deb = DIST / f"syncd_{version.partition(':')[2] or version}_{arch}.deb"
    run("dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, deb, env=env)
    return deb


def main() -> int:
    try:
        deb = build()
    except (BuildError, OSError) as error:
        # OSError: a file that cannot be read or written (permissions, a full disk), named by it.
        print(f"make deb: {error}", file=sys.stderr)
        return 1
    print(f"built {deb.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
