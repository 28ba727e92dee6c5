"""`make bench`: ingest throughput for a 1 GiB upload through `1tt contribute` over
loopback, next to copying the same file on the same disk, which is the limit.

It runs its own ingest process (own topic prefix, schema and blob store under
.run/bench), so the figures are not mixed with the platform's data. Set
TT_BENCH_SIZE_MIB to change the file size (default 1024).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from services.common.config import Settings
from tests.integration.ingest_server import ROOT, start_ingest, stop_ingest

MIB = 1 << 20


def make_text_file(path: Path, size_mib: int) -> None:
    """Plain English-like UTF-8 text (one document), written once and reused."""
    if path.exists() and path.stat().st_size == size_mib * MIB:
        return
    words = (
        "ledger contributor revenue token snapshot manual archive report chapter "
        "transcript section the of and to in is that for with as on by"
    ).split()
    rng = random.Random(7)
    block = bytearray()
    while len(block) < 4 * MIB:
        line = " ".join(rng.choice(words) for _ in range(14)).capitalize() + ".\n"
        block += line.encode()
    block = bytes(block[: 4 * MIB - 1]) + b"\n"
    with path.open("wb") as handle:
        for _ in range(size_mib // 4):
            handle.write(block)
        handle.write(block[: (size_mib % 4) * MIB])


def timed(command: list[str], env: dict | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    size_mib = int(os.environ.get("TT_BENCH_SIZE_MIB", "1024"))
    work = Path(os.environ.get("TT_RUN_DIR", ROOT / ".run")) / "bench"
    work.mkdir(parents=True, exist_ok=True)
    source = work / f"bench-{size_mib}mib.txt"
    make_text_file(source, size_mib)
    size = source.stat().st_size
    copy = work / "copy.txt"

    copies = []
    for _ in range(3):
        copy.unlink(missing_ok=True)
        # cp and then fsync the copy: the ingest path fsyncs the stored blob too.
        copies.append(timed(["bash", "-c", f"cp '{source}' '{copy}' && sync '{copy}'"]))
    copy.unlink(missing_ok=True)
    copy_s = min(copies)

    server_dir = work / "server"
    shutil.rmtree(server_dir, ignore_errors=True)
    server_dir.mkdir()
    # The server's schema is the bench's own, which only the tests' role may create; on
    # Kafka the bench acts as the operator, who prepares the server's topic prefix.
    os.environ["TT_DATABASE_URL"] = Settings.from_env(party="tests").database_url
    server = start_ingest(
        Settings.from_env(),
        server_dir,
        TT_MAX_UPLOAD_BYTES=str(size + MIB),
        TT_LOG_LEVEL="INFO",
    )
    try:
        who = server.principal("contributor", "bench")
        env = {**os.environ, "TT_API_KEY": who["api_key"], "TT_INGEST_ADDRESS": server.address}
        uploads = []
        for run in range(2):
            uploads.append(
                timed(
                    [
                        sys.executable,
                        "-m",
                        "services.cli.main",
                        "contribute",
                        str(source),
                        "--dataset",
                        "bench",
                        "--upload-id",
                        f"bench-{time.time_ns()}-{run}",
                        "--json",
                        "--progress",
                        "never",
                    ],
                    env,
                )
            )
        hash_s = timed(
            [
                sys.executable,
                "-c",
                "import pathlib, sys; from services.cli.client import file_sha256; "
                "file_sha256(pathlib.Path(sys.argv[1]))",
                str(source),
            ]
        )
        stages = [
            line.split("accepted ")[-1]
            for line in server.log_tail().splitlines()
            if "bytes accepted" in line
        ]
    finally:
        stop_ingest(server)
        shutil.rmtree(server_dir, ignore_errors=True)
    upload_s = min(uploads)
    copy_rate, upload_rate = size / MIB / copy_s, size / MIB / upload_s
    print(f"ingest bench: {size / MIB:.0f} MiB plain-text file, loopback gRPC, 2 cores")
    print(f"  cp + fsync on the same disk    {copy_s:7.2f} s  {copy_rate:8.1f} MiB/s  (best of 3)")
    print(
        f"  1tt contribute (end to end)    {upload_s:7.2f} s  {upload_rate:8.1f} MiB/s  (best of 2)"
    )
    print(f"    server stages of the last upload: {stages[-1] if stages else 'n/a'}")
    print(f"  client sha256 of the file alone {hash_s:6.2f} s  (done while sending)")
    print(f"  ratio upload/copy              {upload_rate / copy_rate:7.2f}  (goal >= 0.5)")
    print(
        json.dumps(
            {
                "bench": "ingest",
                "bytes": size,
                "copy_s": round(copy_s, 3),
                "upload_s": round(upload_s, 3),
                "client_hash_s": round(hash_s, 3),
                "ratio": round(upload_rate / copy_rate, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
