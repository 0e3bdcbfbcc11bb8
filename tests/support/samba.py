"""A throwaway Active Directory domain controller (Samba 4 AD DC) for integration tests.

The session fixture :func:`samba_ad` gives every test the same small domain, ``EXAMPLE.TEST``:

1. installs Samba's AD DC packages when ``samba-tool`` is missing (root only; skips otherwise);
2. provisions the domain into a temporary directory with ``samba-tool domain provision
   --targetdir`` (nothing under /etc is touched);
3. runs ``samba -i -M single`` in the foreground as our child, on the fixed AD ports of 127.0.0.1
   (389 LDAP, 636 LDAPS, 3268/3269 global catalog), so one DC per machine: busy ports skip;
4. adds ``OU=Staff`` (and ``OU=Berlin`` below it) with 300 users over one LDAPS connection as
   Administrator, plus a computer and a contact as decoys that AD's person filter must leave out,
   and two service accounts under ``CN=Users`` for syncd to bind as (one enabled, one disabled);
5. stops Samba with SIGTERM and removes the directory at the end of the session.

The facts behind the choices are in ``/work/shared/samba-ad-notes.md``; those measured here:

* Setting a password costs Samba about 25 ms per user (hashes for every key type), so only a few
  users get one (``userAccountControl`` 512, ``unicodePwd`` over LDAPS). The other enabled users are
  ``NORMAL_ACCOUNT | PASSWD_NOTREQD`` (544): enabled in AD's eyes and about six times faster to add.
  The mix also proves that a reader tests bit 0x2 instead of comparing with 512.
* ``ldb:nosync = true`` (what Samba's own test suite uses) skips an fsync per write.
* Samba's self-signed certificate names only ``DC1.example.test`` (in the CN, no subjectAltName),
  so a client that checks host names refuses ``ldaps://127.0.0.1``. Tests connect to
  ``ldaps://dc1.example.test:636`` and make that name resolve to 127.0.0.1 inside the test process
  (:meth:`SambaAD.resolve_dc_hostname`), because /etc/hosts is not ours to change.
* Samba in interactive mode (``-i``) exits when its stdin reaches EOF; stdin is a pipe from us, so
  a crashed test run cannot leave a DC behind holding the ports.

Register the fixture once per session (``tests/conftest.py`` or the one module that uses it):
two definitions would start two DCs on the same ports.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ldap3 import BASE, NONE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.utils.dn import escape_rdn

SAMBA_PACKAGES = (
    "samba",
    "samba-ad-dc",
    "python3-samba",
    "samba-dsdb-modules",
    "winbind",
    "krb5-user",
    # Easy to miss: without it provisioning fails looking for the AD schema LDF files.
    "samba-ad-provision",
)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
AD_SCHEMA_FILE = Path(
    "/usr/share/samba/setup/ad-schema/AD_DS_Attributes__Windows_Server_2012_R2.ldf"
)
AD_PORTS = (389, 636, 3268, 3269)

REALM = "EXAMPLE.TEST"
NETBIOS_DOMAIN = "EXAMPLE"
DNS_DOMAIN = "example.test"
DOMAIN_DN = "DC=example,DC=test"
USERS_DN = f"CN=Users,{DOMAIN_DN}"
STAFF_DN = f"OU=Staff,{DOMAIN_DN}"
BERLIN_DN = f"OU=Berlin,{STAFF_DN}"

SESSION_USERS = 300

# userAccountControl flags (MS-ADTS 2.2.16).
UAC_ACCOUNTDISABLE = 0x2
UAC_PASSWD_NOTREQD = 0x20
UAC_NORMAL_ACCOUNT = 0x200
UAC_WORKSTATION_TRUST_ACCOUNT = 0x1000

_USER_CLASSES = ["top", "person", "organizationalPerson", "user"]


# -------------------------------------------------------------------------------- sample users

# (given names, surnames) per language; a few Cyrillic names among the Latin ones.
_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "en": (("Anna", "James", "Oliver", "Mary"), ("Smith", "O'Brien", "Taylor-Wood")),
    "de": (
        ("Jürgen", "Änne", "Sören", "Jörg", "Lukas"),
        ("Müller", "Größe", "Schäfer", "Weiß", "Köhler"),
    ),
    "fr": (
        ("Hélène", "François", "Zoé", "Noël", "Anaïs", "Chloé"),
        ("Lefèvre", "Garçon", "Dupré", "Bélanger"),
    ),
    "nordic": (
        ("Åsa", "Bjørn", "Søren", "Þórunn", "Ægir"),
        ("Ødegård", "Åkesson", "Sigurðardóttir", "Kjærgaard"),
    ),
    "pl": (
        ("Łukasz", "Małgorzata", "Zbigniew", "Źdźisław", "Żaneta"),
        ("Wałęsa", "Brzęczyszczykiewicz", "Szczęsny", "Ślęzak"),
    ),
}
_CYRILLIC = (("Иван", "Ольга", "Юлия", "Дмитрий"), ("Петров", "Смирнова", "Щукин", "Ёлкина"))
# The first users get these names, so a test can look for each case by name.
_FIXED_NAMES = (
    ("Jürgen", "Müller"),
    ("Hélène", "Lefèvre"),
    ("Bjørn", "Ødegård"),
    ("Þórunn", "Sigurðardóttir"),
    ("Łukasz", "Brzęczyszczykiewicz"),
    ("Иван", "Петров"),
)


@dataclass(frozen=True, slots=True)
class AdUser:
    """One user as the fixture writes it to AD (and as syncd should read it back)."""

    sam_account_name: str
    given_name: str
    surname: str
    mail: str | None
    enabled: bool
    parent_dn: str
    # Only a few enabled users get a real password (slow to set); see the module docstring.
    password: str | None = None

    @property
    def cn(self) -> str:
        return f"{self.given_name} {self.surname} {self.sam_account_name}"

    @property
    def dn(self) -> str:
        return f"CN={escape_rdn(self.cn)},{self.parent_dn}"

    @property
    def user_principal_name(self) -> str:
        return f"{self.sam_account_name}@{DNS_DOMAIN}"

    @property
    def user_account_control(self) -> int:
        if not self.enabled:
            # AD refuses an enabled account without a password unless PASSWD_NOTREQD is set.
            return UAC_NORMAL_ACCOUNT | UAC_ACCOUNTDISABLE
        if self.password is None:
            return UAC_NORMAL_ACCOUNT | UAC_PASSWD_NOTREQD
        return UAC_NORMAL_ACCOUNT


def make_ad_users(n: int = SESSION_USERS, seed: int = 7) -> list[AdUser]:
    """``n`` deterministic users: every 10th disabled, every 6th without mail, every 5th in Berlin.

    About one in 30 of the enabled users has a real password; one in 12 has a Cyrillic name.
    """
    rng = random.Random(seed)
    languages = tuple(_NAMES)
    users = []
    for index in range(n):
        if index < len(_FIXED_NAMES):
            given, surname = _FIXED_NAMES[index]
        else:
            given_names, surnames = _CYRILLIC if index % 12 == 11 else _NAMES[rng.choice(languages)]
            given, surname = rng.choice(given_names), rng.choice(surnames)
        sam = f"staff{index:04d}"
        enabled = index % 10 != 3
        users.append(
            AdUser(
                sam_account_name=sam,
                given_name=given,
                surname=surname,
                mail=None if index % 6 == 5 else f"{sam}@{DNS_DOMAIN}",
                enabled=enabled,
                parent_dn=BERLIN_DN if index % 5 == 4 else STAFF_DN,
                password=f"Staff-Pw-{index:04d}!" if enabled and index % 30 == 1 else None,
            )
        )
    return users


def unicode_pwd(password: str) -> bytes:
    """AD's ``unicodePwd`` value: the password in double quotes, UTF-16-LE encoded."""
    return f'"{password}"'.encode("utf-16-le")


# ------------------------------------------------------------------------------ machine checks


def _samba_installed() -> bool:
    return (
        all(shutil.which(tool, path=SYSTEM_PATH) for tool in ("samba-tool", "samba"))
        and AD_SCHEMA_FILE.exists()
    )


def ensure_samba_installed() -> None:
    """Install the Samba AD DC packages if needed (root only), or skip the calling test."""
    if _samba_installed():
        return
    if os.geteuid() != 0:
        pytest.skip(
            "Samba AD DC is not installed and installing it needs root: "
            f"apt-get install --no-install-recommends {' '.join(SAMBA_PACKAGES)}"
        )
    if shutil.which("apt-get", path=SYSTEM_PATH) is None:
        pytest.skip("Samba AD DC is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "PATH": SYSTEM_PATH}
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", *SAMBA_PACKAGES],
    ):
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            pytest.skip(
                f"could not install Samba ({' '.join(command[:2])} exited with "
                f"{result.returncode}): {(result.stderr or result.stdout)[-500:]}"
            )
    if not _samba_installed():
        pytest.skip("Samba packages installed but samba-tool, samba or the AD schema is missing")


def busy_ad_ports(host: str = "127.0.0.1") -> list[int]:
    """The AD ports on ``host`` that something already listens on (SO_REUSEADDR ignores
    TIME_WAIT leftovers of an earlier run, as Samba itself does)."""
    busy = []
    for port in AD_PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                busy.append(port)
    return busy


def _samba_tool_env() -> dict[str, str]:
    """samba-tool runs under Debian's /usr/bin/python3: keep our venv's settings away from it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = SYSTEM_PATH
    return env


# -------------------------------------------------------------------------------------- the DC


class SambaAD:
    """A Samba AD DC for ``EXAMPLE.TEST`` living in ``directory``.

    Call :meth:`build` (provision, start, add users), then :meth:`stop`. After ``build``,
    :attr:`object_guids` maps each user's sAMAccountName to the 16 raw bytes of its objectGUID.
    """

    host = "127.0.0.1"
    url = "ldap://127.0.0.1:389"
    ldaps_url = "ldaps://127.0.0.1:636"
    # The only name the DC's self-signed certificate carries (CN, no subjectAltName).
    dc_hostname = f"dc1.{DNS_DOMAIN}"
    ldaps_hostname_url = f"ldaps://{dc_hostname}:636"

    domain_dn = DOMAIN_DN
    base_dn = STAFF_DN
    admin_upn = f"Administrator@{DNS_DOMAIN}"
    admin_dn = f"CN=Administrator,{USERS_DN}"
    admin_password = "Adm1n-Secret-Pw!"
    # An ordinary enabled user for syncd to bind as: by default AD lets any authenticated user
    # read users, which is how a least-privilege service account works in real domains.
    reader_dn = f"CN=svc-syncd,{USERS_DN}"
    reader_upn = f"svc-syncd@{DNS_DOMAIN}"
    reader_password = "Svc-Syncd-Pw-2026!"
    # The same kind of account, disabled (514) but with a good password: AD says "data 533".
    disabled_reader_dn = f"CN=svc-disabled,{USERS_DN}"
    disabled_reader_password = "Svc-Disabled-Pw-2026!"
    computer_dn = f"CN=WS0001,{STAFF_DN}"
    contact_dn = f"CN=External Contact,{STAFF_DN}"

    def __init__(self, directory: Path, users: Sequence[AdUser]) -> None:
        self.directory = Path(directory)
        self.users = list(users)
        self.object_guids: dict[str, bytes] = {}
        self.timings: dict[str, float] = {}
        self._process: subprocess.Popen[bytes] | None = None

    # Paths and expectations -----------------------------------------------------------------

    @property
    def smb_conf(self) -> Path:
        return self.directory / "etc" / "smb.conf"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the DC's certificate (PEM); pass it as ``source.ca_file``."""
        return self.directory / "private" / "tls" / "ca.pem"

    @property
    def cert_file(self) -> Path:
        return self.directory / "private" / "tls" / "cert.pem"

    @property
    def log_file(self) -> Path:
        return self.directory / "log" / "samba.out"

    @property
    def expected(self) -> dict[str, bool]:
        """sAMAccountName → enabled, for every user the person filter should return."""
        return {user.sam_account_name: user.enabled for user in self.users}

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # Lifecycle ------------------------------------------------------------------------------

    def build(self) -> None:
        for step in (self.provision, self.start, self.populate):
            started = time.perf_counter()
            step()
            self.timings[step.__name__] = time.perf_counter() - started

    def provision(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                "samba-tool",
                "domain",
                "provision",
                f"--targetdir={self.directory}",
                f"--realm={REALM}",
                f"--domain={NETBIOS_DOMAIN}",
                "--server-role=dc",
                "--dns-backend=NONE",
                "--use-rfc2307",
                f"--adminpass={self.admin_password}",
                f"--host-ip={self.host}",
                "--host-name=dc1",
                "--option=interfaces=lo",
                "--option=bind interfaces only=yes",
                "--option=server services=ldap",
            ],
            cwd=self.directory,
            env=_samba_tool_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"samba-tool domain provision failed ({result.returncode}): "
                f"{(result.stderr + result.stdout)[-3000:]}"
            )
        self._finish_smb_conf()

    def _finish_smb_conf(self) -> None:
        """Keep every runtime file under our directory and allow simple binds without TLS.

        ``ldap server require strong auth`` given at provision time is not kept, hence here.
        """
        run = self.directory / "run"
        for sub in ("run", "log", "cache"):
            (self.directory / sub).mkdir(exist_ok=True)
        extra = {
            "ldap server require strong auth": "no",
            "ldb:nosync": "true",
            "pid directory": run,
            "ncalrpc dir": run / "ncalrpc",
            "winbindd socket directory": run / "winbindd",
            "log file": self.directory / "log" / "samba.log",
        }
        # Drop what provisioning wrote for these keys (e.g. log file = /var/log/samba/log.%m):
        # in smb.conf the last setting wins, so prepending ours would not be enough.
        kept = [
            line
            for line in self.smb_conf.read_text().splitlines(keepends=True)
            if line.partition("=")[0].strip().lower() not in extra
        ]
        if "[global]\n" not in kept:
            raise RuntimeError(f"no [global] section in {self.smb_conf}")
        at = kept.index("[global]\n") + 1
        kept[at:at] = [f"\t{key} = {value}\n" for key, value in extra.items()]
        self.smb_conf.write_text("".join(kept))

    def start(self, timeout: float = 30.0) -> None:
        if self.running:
            return
        with self.log_file.open("ab") as out:
            self._process = subprocess.Popen(
                ["samba", "-i", "-M", "single", "-s", str(self.smb_conf)],
                cwd=self.directory,
                env=_samba_tool_env(),
                stdin=subprocess.PIPE,  # EOF on it stops Samba: no orphan if we die
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_ldap_answers(timeout)

    def _wait_until_ldap_answers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"samba exited with {self._process.returncode} while starting: "
                    f"{self.log_file.read_text(errors='replace')[-3000:]}"
                )
            with contextlib.suppress(LDAPException):
                # An anonymous read of the root DSE, as `ldapsearch -x -b "" -s base` does.
                server = Server(self.url, get_info=NONE, connect_timeout=1)
                with Connection(server, auto_bind=True, receive_timeout=2) as conn:
                    if conn.search(
                        "", "(objectClass=*)", BASE, attributes=["defaultNamingContext"]
                    ):
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"samba's LDAP did not answer on {self.url} within {timeout}s")
            time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        if process.stdin is not None:
            process.stdin.close()

    # Data -----------------------------------------------------------------------------------

    def admin_connection(self) -> Connection:
        """A bound LDAPS connection as Administrator that verifies the DC's certificate."""
        tls = Tls(
            validate=ssl.CERT_REQUIRED,
            ca_certs_file=str(self.ca_file),
            valid_names=[self.dc_hostname],  # the certificate does not name 127.0.0.1
        )
        server = Server(self.ldaps_url, use_ssl=True, tls=tls, get_info=NONE, connect_timeout=5)
        return Connection(
            server,
            self.admin_upn,
            self.admin_password,
            auto_bind=True,
            raise_exceptions=True,
            receive_timeout=30,
        )

    def populate(self) -> None:
        """Add the OUs, the reader account, the users and the decoys over one connection."""
        with self.admin_connection() as conn:
            for dn in (STAFF_DN, BERLIN_DN):
                conn.add(dn, ["top", "organizationalUnit"])
            for dn, name, password, uac in (
                (self.reader_dn, "svc-syncd", self.reader_password, UAC_NORMAL_ACCOUNT),
                (
                    self.disabled_reader_dn,
                    "svc-disabled",
                    self.disabled_reader_password,
                    UAC_NORMAL_ACCOUNT | UAC_ACCOUNTDISABLE,
                ),
            ):
                conn.add(
                    dn,
                    _USER_CLASSES,
                    {
                        "sAMAccountName": name,
                        "userPrincipalName": f"{name}@{DNS_DOMAIN}",
                        "unicodePwd": unicode_pwd(password),
                        "userAccountControl": str(uac),
                    },
                )
            for user in self.users:
                conn.add(user.dn, _USER_CLASSES, _user_attributes(user))
            # Decoys under the base DN: a computer is objectClass=user but objectCategory=computer,
            # a contact is objectCategory=person but not objectClass=user.
            conn.add(
                self.computer_dn,
                [*_USER_CLASSES, "computer"],
                {
                    "sAMAccountName": "WS0001$",
                    "userAccountControl": str(UAC_WORKSTATION_TRUST_ACCOUNT),
                },
            )
            conn.add(
                self.contact_dn,
                ["top", "person", "organizationalPerson", "contact"],
                {"givenName": "External", "sn": "Contact", "mail": "contact@partner.example"},
            )
            self.object_guids = self._read_object_guids(conn)

    def _read_object_guids(self, conn: Connection) -> dict[str, bytes]:
        conn.search(
            STAFF_DN,
            "(&(objectCategory=person)(objectClass=user))",
            SUBTREE,
            attributes=["sAMAccountName", "objectGUID"],
        )
        guids = {}
        for entry in conn.response:
            if entry.get("type") != "searchResEntry":
                continue  # referrals
            raw: dict[str, Any] = entry["raw_attributes"]
            guids[raw["sAMAccountName"][0].decode()] = bytes(raw["objectGUID"][0])
        if set(guids) != {user.sam_account_name for user in self.users}:
            raise RuntimeError(f"read back {len(guids)} users, added {len(self.users)}")
        return guids

    # Test helpers ---------------------------------------------------------------------------

    def resolve_dc_hostname(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make :attr:`dc_hostname` resolve to 127.0.0.1 in this process, for this test only."""
        real_getaddrinfo = socket.getaddrinfo
        name = self.dc_hostname

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(host, str) and host.lower().rstrip(".") == name:
                host = self.host
            return real_getaddrinfo(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _user_attributes(user: AdUser) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "sAMAccountName": user.sam_account_name,
        "userPrincipalName": user.user_principal_name,
        "givenName": user.given_name,
        "sn": user.surname,
        "displayName": f"{user.given_name} {user.surname}",
        "userAccountControl": str(user.user_account_control),
    }
    if user.mail is not None:
        attributes["mail"] = user.mail
    if user.password is not None:
        attributes["unicodePwd"] = unicode_pwd(user.password)
    return attributes


# ------------------------------------------------------------------------------- pytest fixture


@pytest.fixture(scope="session")
def samba_ad() -> Iterator[SambaAD]:
    """One Samba AD DC for the session with :data:`SESSION_USERS` users under ``OU=Staff``."""
    started = time.perf_counter()
    ensure_samba_installed()
    busy = busy_ad_ports()
    if busy:
        pytest.skip(
            f"cannot run a Samba AD DC: ports {busy} on 127.0.0.1 are in use "
            "(AD's ports are fixed; is another DC or slapd running there?)"
        )
    directory = Path(tempfile.mkdtemp(prefix="syncd-samba-"))
    dc = SambaAD(directory, make_ad_users())
    try:
        dc.build()
        dc.timings["total"] = time.perf_counter() - started
        yield dc
    finally:
        dc.stop()
        shutil.rmtree(directory, ignore_errors=True)
