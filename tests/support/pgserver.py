"""Start a throwaway PostgreSQL server from the machine's binaries, for tests and bench/ (works as root)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> Path:
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    raise PostgresUnavailable("no PostgreSQL server binaries (initdb, pg_ctl) found")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    bindir: Path
    base: Path
    port: int
    _as_postgres: list[str] = field(default_factory=list)

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as_postgres, *args], capture_output=True, text=True, check=True, cwd=self.base
        )

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        out = self._run(
            str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "-d", dbname, "-v", "ON_ERROR_STOP=1", "-Atc", sql,
        )
        return out.stdout

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [*self._as_postgres, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate",
             "stop"], capture_output=True, check=False,
        )
        shutil.rmtree(self.base, ignore_errors=True)


def start_postgres(settings: dict[str, str] | None = None) -> PgServer:
    """initdb + pg_ctl start on a free loopback port; initdb refuses root, so run it as postgres."""
    bindir = find_bindir()
    base = Path(tempfile.mkdtemp(prefix="careloop-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            raise PostgresUnavailable("running as root and runuser is missing")
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise PostgresUnavailable("running as root and there is no postgres user") from exc
        os.chown(base, pw.pw_uid, pw.pw_gid)
        as_postgres = ["runuser", "-u", "postgres", "--"]
    server = PgServer(bindir=bindir, base=base, port=_free_port(), _as_postgres=as_postgres)
    server._run(
        str(bindir / "initdb"), "-D", str(server.datadir), "-U", "postgres", "-A", "trust",
        "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
    )
    opts = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(server.port),
        "unix_socket_directories": f"'{base}'",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "100",
        "shared_buffers": "256MB",
        **(settings or {}),
    }
    with (server.datadir / "postgresql.conf").open("a", encoding="utf-8") as fh:
        for k, v in opts.items():
            fh.write(f"{k} = {v}\n")
    server._run(
        str(bindir / "pg_ctl"), "-D", str(server.datadir), "-l", str(base / "log"), "-w", "-t", "60",
        "start",
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            server.psql("SELECT 1")
            return server
        except subprocess.CalledProcessError:
            time.sleep(0.2)
    server.stop()
    raise PostgresUnavailable("PostgreSQL did not start within 30 s")
