"""A throwaway OpenLDAP ``slapd`` for tests and benchmarks, plus realistic sample people.

``Slapd`` writes a private ``slapd.conf`` into a directory, loads the data offline with ``slapadd``
(fast: 100k entries in about a second), and runs ``slapd`` in the foreground on free loopback
ports with plain LDAP and LDAPS, the certificate coming from a throwaway ``trustme`` CA. Besides
the root DN it provisions two ordinary reader accounts, because the root DN ignores size limits:

* ``reader_dn``: limited to 500 entries per plain search but unlimited in total for paged
  searches (``size.prtotal=unlimited``), so a paged read proves that paging works;
* ``limited_reader_dn``: the same without ``size.prtotal``, so a paged read stops at 500 entries
  with sizeLimitExceeded (rc 4), which is what a real directory's admin limit looks like.

The people generator (:func:`make_people`, :func:`make_people_ldif`) gives every entry a fixed
``entryUUID`` (slapadd keeps a supplied one), so tests and the benchmark know the anchors in
advance. Names come from many scripts; non-ASCII values are base64-encoded as LDIF requires.

The pytest fixtures ``slapd`` (session-wide, 2,500 people) and ``slapd_factory`` (per test) are
meant to be imported into ``tests/conftest.py``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from types import TracebackType

import ldap3
import pytest
import trustme

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")

BASE_DN = "dc=example,dc=org"
PEOPLE_DN = f"ou=people,{BASE_DN}"
SERVICE_DN = f"ou=service,{BASE_DN}"

SESSION_PEOPLE = 2500
SESSION_SEED = 1

requires_slapd = pytest.mark.skipif(
    not SLAPD.exists(), reason=f"{SLAPD} is not installed (apt-get install slapd ldap-utils)"
)

# A small auxiliary class for the HR start date, as many sites add one. It lives under
# OpenLDAP's experimental OID arc (1.3.6.1.4.1.4203.666), which is meant for exactly this.
_HR_SCHEMA = """\
attributetype ( 1.3.6.1.4.1.4203.666.11.99.1 NAME 'hrStartDate'
    DESC 'first working day, YYYY-MM-DD or GeneralizedTime'
    EQUALITY caseIgnoreMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.4203.666.11.99.2 NAME 'hrPerson'
    DESC 'HR data syncd reads' SUP top AUXILIARY MAY ( hrStartDate ) )
"""


# --------------------------------------------------------------------------------- sample people

# (given names, surnames) per script or language; the mix is what makes the tests worth running.
_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "en": (
        ("Anna", "James", "Mary", "Oliver", "Siobhán", "Zoë"),
        ("Smith", "O'Brien", "Brown", "Taylor-Wood", "Nguyen"),
    ),
    "de": (
        ("Jürgen", "Björn", "Änne", "Lukas", "Sören", "Maximilian"),
        ("Müller", "Größe", "Schäfer", "Weiß", "von Löwenstein"),
    ),
    "fr": (("Zoé", "François", "Hélène", "Noël", "Anaïs"), ("Lefèvre", "Garçon", "Dupré", "Aubé")),
    "pl_cs": (
        ("Łukasz", "Zofia", "Jiří", "Małgorzata", "Řehoř"),
        ("Wałęsa", "Dvořák", "Szczęsny", "Černý"),
    ),
    "nordic": (("Åsa", "Øystein", "Þórunn", "Søren"), ("Ødegård", "Åkesson", "Þórsdóttir")),
    "tr": (("Çağrı", "Şule", "İsmail", "Gülşen"), ("Öztürk", "Yılmaz", "Şahin")),
    "ru": (
        ("Анна", "Сергей", "Юлия", "Дмитрий", "Ёлка"),
        ("Иванова", "Петров", "Смирнова", "Щукин"),
    ),
    "uk": (("Олександр", "Ґанна", "Їжак"), ("Шевченко", "Коваленко", "Єрмоленко")),
    "el": (("Γιώργος", "Μαρία", "Ελένη", "Νίκος"), ("Παπαδόπουλος", "Οικονόμου", "Κωνσταντίνου")),
    "zh": (("伟", "芳", "秀英", "娜"), ("王", "李", "张", "欧阳")),
    "ja": (("さくら", "翔太", "陽菜", "ユウキ"), ("佐藤", "鈴木", "高橋", "渡辺")),
    "ko": (("민준", "서연", "지우"), ("김", "이", "박")),
    "ar": (("محمد", "فاطمة", "علي"), ("الحسن", "حداد", "منصور")),
    "he": (("נועה", "יוסף", "תמר"), ("כהן", "לוי", "מזרחי")),
    "vi": (("Nguyễn Thị", "Phương", "Đức"), ("Trần", "Lê", "Phạm")),
}
_SCRIPTS = tuple(_NAMES)


@dataclass(frozen=True, slots=True)
class SamplePerson:
    """One generated person, as it is written to LDIF (and should come back from syncd)."""

    uid: str
    entry_uuid: str
    employee_number: str
    given_name: str
    surname: str
    mail: str | None
    start_date: date | None
    start_date_text: str | None
    disabled: bool

    @property
    def dn(self) -> str:
        return f"uid={self.uid},{PEOPLE_DN}"


def make_people(
    n: int, seed: int = SESSION_SEED, *, disabled_ratio: float = 0.05
) -> list[SamplePerson]:
    """``n`` deterministic people: names in many scripts, some disabled, mixed date formats."""
    rng = random.Random(seed)
    first_day = date(2020, 1, 1)
    people = []
    for index in range(n):
        given_names, surnames = _NAMES[_SCRIPTS[rng.randrange(len(_SCRIPTS))]]
        day = first_day + timedelta(days=rng.randrange(8 * 365))
        start: date | None = day
        start_text: str | None
        if index % 10 == 9:
            start, start_text = None, None
        elif index % 3 == 0:
            start_text = day.strftime("%Y%m%d000000Z")  # LDAP GeneralizedTime
        else:
            start_text = day.isoformat()
        people.append(
            SamplePerson(
                uid=f"u{index:06d}",
                entry_uuid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                employee_number=f"E{seed:02d}{index:07d}",
                given_name=rng.choice(given_names),
                surname=rng.choice(surnames),
                mail=None if index % 7 == 6 else f"u{index:06d}@example.org",
                start_date=start,
                start_date_text=start_text,
                disabled=rng.random() < disabled_ratio,
            )
        )
    return people


def ldif_line(attribute: str, value: str) -> str:
    """One LDIF attribute line; base64 when the value is not a plain SAFE-STRING (RFC 2849)."""
    if (
        value.isascii()
        and value.isprintable()
        and not value.startswith((" ", ":", "<"))
        and not value.endswith(" ")
    ):
        return f"{attribute}: {value}\n"
    return f"{attribute}:: {base64.b64encode(value.encode('utf-8')).decode('ascii')}\n"


def ldif_entry(dn: str, attributes: Iterable[tuple[str, str]]) -> str:
    return ldif_line("dn", dn) + "".join(ldif_line(a, v) for a, v in attributes) + "\n"


def person_ldif(person: SamplePerson, *, disabled_attribute: str = "employeeType") -> str:
    attributes = [
        ("objectClass", "inetOrgPerson"),
        ("objectClass", "hrPerson"),
        ("uid", person.uid),
        ("entryUUID", person.entry_uuid),
        ("employeeNumber", person.employee_number),
        ("cn", f"{person.given_name} {person.surname}"),
        ("givenName", person.given_name),
        ("sn", person.surname),
    ]
    if person.mail:
        attributes.append(("mail", person.mail))
    if person.start_date_text:
        attributes.append(("hrStartDate", person.start_date_text))
    if person.disabled:
        attributes.append((disabled_attribute, "disabled"))
    return ldif_entry(person.dn, attributes)


def people_ldif(people: Iterable[SamplePerson], *, disabled_attribute: str = "employeeType") -> str:
    return "".join(person_ldif(p, disabled_attribute=disabled_attribute) for p in people)


def make_people_ldif(n: int, seed: int = SESSION_SEED) -> str:
    """LDIF for ``n`` people under ``ou=people,dc=example,dc=org`` (the benchmark uses this)."""
    return people_ldif(make_people(n, seed))


# ---------------------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"slapd exited with {process.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"slapd did not listen on port {port} within {timeout}s")


class Slapd:
    """A private slapd in ``directory``; use as a context manager or call start()/stop()."""

    base_dn = BASE_DN
    people_dn = PEOPLE_DN
    root_dn = f"cn=admin,{BASE_DN}"
    root_password = "root-secret-Pw1"
    reader_dn = f"cn=reader,{SERVICE_DN}"
    reader_password = "reader-secret-Pw1"
    limited_reader_dn = f"cn=limited-reader,{SERVICE_DN}"
    limited_reader_password = "limited-secret-Pw1"
    host = "127.0.0.1"

    def __init__(
        self,
        directory: Path,
        ldif: str = "",
        *,
        people: Sequence[SamplePerson] = (),
        ca: trustme.CA | None = None,
        cert_names: Sequence[str] = ("127.0.0.1", "localhost"),
        indexes: Sequence[str] = (),
        overlays: Sequence[str] = (),
    ) -> None:
        self.directory = Path(directory)
        # Equality indexes beyond objectClass and uid (the benchmark adds entryCSN, which
        # spares slapd looking at every entry for a delta read's entryCSN>= filter), and
        # overlays on the database (syncprov keeps the suffix's contextCSN).
        self.indexes = tuple(indexes)
        self.overlays = tuple(overlays)
        self.people = list(people)
        self._ldif = ldif
        self.ca = ca or trustme.CA()
        self._cert_names = tuple(cert_names)
        self.port = free_port()
        self.ldaps_port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._prepared = False

    # Paths and URLs -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ldap://{self.host}:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{self.host}:{self.ldaps_port}"

    @property
    def ca_file(self) -> Path:
        """The throwaway CA's certificate (PEM), to pass as ``source.ca_file``."""
        return self.directory / "ca.pem"

    @property
    def conf_file(self) -> Path:
        return self.directory / "slapd.conf"

    @property
    def pid_file(self) -> Path:
        return self.directory / "slapd.pid"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # Lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        if not self._prepared:
            self._prepare()
        log = self.directory / "slapd.log"
        # -d 0 keeps slapd in the foreground (no fork), so it stays our child and can be
        # reaped; "loglevel none" in the config keeps it quiet and fast.
        with log.open("ab") as out:
            self._process = subprocess.Popen(
                [
                    str(SLAPD),
                    "-f",
                    str(self.conf_file),
                    "-h",
                    f"{self.url}/ {self.ldaps_url}/",
                    "-d",
                    "0",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        _wait_for_port(self.port, self._process, log, timeout)
        _wait_for_port(self.ldaps_port, self._process, log, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        pid = process.pid
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pid_file.read_text().strip())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def admin(self) -> ldap3.Connection:
        """A connection as the root DN, bound (for changes an administrator makes); use it in a
        ``with`` block, which unbinds it."""
        return ldap3.Connection(
            ldap3.Server(self.url, get_info=ldap3.NONE),
            self.root_dn,
            self.root_password,
            auto_bind=True,
            raise_exceptions=True,
        )

    def modify(self, dn: str, **values: str) -> None:
        """Replace attributes of an entry, as the root DN."""
        with self.admin() as connection:
            connection.modify(dn, {k: [(ldap3.MODIFY_REPLACE, [v])] for k, v in values.items()})

    def __enter__(self) -> Slapd:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # Setup ----------------------------------------------------------------------------------

    def _prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        data = self.directory / "data"
        data.mkdir(exist_ok=True)
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        server_cert = self.ca.issue_cert(*self._cert_names)
        server_cert.cert_chain_pems[0].write_to_path(str(self.directory / "server.pem"))
        server_cert.private_key_pem.write_to_path(str(self.directory / "server.key"))
        (self.directory / "hr.schema").write_text(_HR_SCHEMA)
        self.conf_file.write_text(self._config(data))
        ldif = self.directory / "data.ldif"
        ldif.write_text(self._base_ldif() + people_ldif(self.people) + self._ldif, encoding="utf-8")
        result = subprocess.run(
            [str(SLAPADD), "-q", "-f", str(self.conf_file), "-l", str(ldif)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"slapadd failed ({result.returncode}): {result.stderr[-2000:]}")
        self._prepared = True

    def _config(self, data: Path) -> str:
        schemas = "".join(
            f"include {SCHEMA_DIR / name}.schema\n" for name in ("core", "cosine", "inetorgperson")
        )
        modules = "".join(f"moduleload {name}\n" for name in self.overlays)
        database = "".join(f"index {name} eq\n" for name in self.indexes)
        database += "".join(f"overlay {name}\n" for name in self.overlays)
        return f"""\
{schemas}include {self.directory / "hr.schema"}
modulepath {MODULE_DIR}
moduleload back_mdb
{modules}pidfile {self.pid_file}
argsfile {self.directory / "slapd.args"}
loglevel none
TLSCACertificateFile {self.ca_file}
TLSCertificateFile {self.directory / "server.pem"}
TLSCertificateKeyFile {self.directory / "server.key"}

database mdb
maxsize 2147483648
dbnosync
suffix "{BASE_DN}"
rootdn "{self.root_dn}"
rootpw {self.root_password}
directory {data}
index objectClass eq
index uid eq
{database}
limits dn.exact="{self.reader_dn}" size.soft=500 size.hard=500 size.pr=500 size.prtotal=unlimited
limits dn.exact="{self.limited_reader_dn}" size.soft=500 size.hard=500 size.pr=500

access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by dn.exact="{self.reader_dn}" read
    by dn.exact="{self.limited_reader_dn}" read
    by * none
"""

    def _base_ldif(self) -> str:
        def account(dn: str, name: str, password: str) -> str:
            return ldif_entry(
                dn,
                [
                    ("objectClass", "organizationalRole"),
                    ("objectClass", "simpleSecurityObject"),
                    ("cn", name),
                    ("userPassword", password),
                ],
            )

        return (
            ldif_entry(
                BASE_DN,
                [
                    ("objectClass", "dcObject"),
                    ("objectClass", "organization"),
                    ("dc", "example"),
                    ("o", "Example Org"),
                ],
            )
            + ldif_entry(PEOPLE_DN, [("objectClass", "organizationalUnit"), ("ou", "people")])
            + ldif_entry(SERVICE_DN, [("objectClass", "organizationalUnit"), ("ou", "service")])
            + account(self.reader_dn, "reader", self.reader_password)
            + account(self.limited_reader_dn, "limited-reader", self.limited_reader_password)
        )


# -------------------------------------------------------------------------------- pytest fixtures


def _skip_without_slapd() -> None:
    if not SLAPD.exists():
        pytest.skip(f"{SLAPD} is not installed (apt-get install slapd ldap-utils)")


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """One slapd for the whole session with 2,500 generated people (``slapd.people``)."""
    _skip_without_slapd()
    server = Slapd(tmp_path_factory.mktemp("slapd"), people=make_people(SESSION_PEOPLE))
    with server:
        yield server


SlapdFactory = Callable[..., Slapd]


@pytest.fixture
def slapd_factory(tmp_path: Path) -> Iterator[SlapdFactory]:
    """Start private slapd instances for one test: ``slapd_factory(ldif=..., people=...)``."""
    _skip_without_slapd()
    servers: list[Slapd] = []

    def start(ldif: str = "", **kwargs: object) -> Slapd:
        server = Slapd(tmp_path / f"slapd{len(servers)}", ldif, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
