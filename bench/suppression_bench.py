"""Loading a suppression list: time, client memory and Redis bytes per identity.

    .venv/bin/python -m bench.suppression_bench [--rows 1000000]

Writes a CSV of ``--rows`` people (an email each, a phone for every other one), starts its own
redis-server on a unix socket in a temporary directory (never the machine's Redis), loads the
file with the same code as ``leadgate suppress load``, then prints rows/s, the loader's peak
RSS and Redis ``used_memory`` growth per stored identity.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from gateway.leads.fingerprint import Fingerprinter
from gateway.privacy.suppression import load_csv
from gateway.storage.redis import RedisStore
from gateway.types import FingerprintKey


def write_csv(path: Path, rows: int) -> None:
    with path.open("w") as out:
        out.write("email,phone\n")
        for i in range(rows):
            phone = f"+336{i % 100_000_000:08d}" if i % 2 == 0 else ""
            out.write(f"person.{i}@example{i % 97}.org,{phone}\n")


def used_memory(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


async def load(url: str, path: Path) -> tuple[int, int, float]:
    store = RedisStore(url)
    try:
        report = await load_csv(
            store, Fingerprinter((FingerprintKey("b1", b"b" * 32),)), "optout", path
        )
    finally:
        await store.close()
    return report.rows, report.identities, report.seconds


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lg-sup-") as tmp:
        work = Path(tmp)
        csv_path = work / "list.csv"
        started = time.perf_counter()
        write_csv(csv_path, args.rows)
        print(f"wrote {args.rows:,} rows in {time.perf_counter() - started:.1f} s")
        sock = work / "redis.sock"
        server = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", str(sock), "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            url = f"unix://{sock}"
            for _ in range(100):
                if sock.exists():
                    break
                time.sleep(0.05)
            before = used_memory(url)
            rows, identities, seconds = asyncio.run(load(url, csv_path))
            grown = used_memory(url) - before
        finally:
            server.terminate()
            server.wait(timeout=10)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"loaded {rows:,} rows ({identities:,} identities) in {seconds:.1f} s: "
          f"{rows / seconds:,.0f} rows/s, {identities / seconds:,.0f} identities/s")  # fmt: skip
    print(f"loader peak RSS {peak_mib:.0f} MiB; Redis +{grown / 2**20:.0f} MiB, "
          f"{grown / identities:.0f} bytes per identity")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
