"""Memory after a long ingest: a million distinct events through one ours process, RSS sampled per chunk."""

from collections.abc import Callable
from pathlib import Path
from time import monotonic
from typing import Any

from bench import burst, measure
from bench.databases import fresh
from bench.servers import OURS, Server, ServerFailed

CHUNK = 100_000
CONNECTIONS = 32


def rss_after_ingest(
    kind: str, *, events: int, time_cap_s: float, workdir: Path, say: Callable[[str], None]
) -> dict[str, Any]:
    """Sends `events` distinct events (no duplicates) in chunks, or as many as fit in `time_cap_s`."""
    outcome: dict[str, Any] = {
        "database": kind,
        "target_events": events,
        "connections": CONNECTIONS,
        "time_cap_s": time_cap_s,
        "samples": [],
    }
    sent = non2xx = 0
    began = monotonic()
    with fresh(kind, workdir, "memory") as database:
        try:
            with Server(
                OURS, workers=1, env=measure.server_env(database), log_path=workdir / f"memory-{kind}.log"
            ) as server:
                server.wait_ready()
                outcome["samples"].append({"events_sent": 0, **_memory(server), "seconds": 0.0})
                chunk_number = 0
                while sent < events and (remaining := time_cap_s - (monotonic() - began)) > 5:
                    chunk = burst.ingest(
                        url=server.url,
                        tag=f"s{chunk_number}",
                        count=min(CHUNK, events - sent),
                        connections=CONNECTIONS,
                        budget_s=remaining,
                        workdir=workdir,
                        duplicate_ratio=0.0,
                    )
                    chunk_number += 1
                    sent += chunk.unique_sent
                    non2xx += chunk.result.non2xx
                    sample = {
                        "events_sent": sent,
                        **_memory(server),
                        "seconds": round(monotonic() - began, 1),
                        "rps": round(chunk.result.rps),
                        "p99_ms": chunk.result.p99_ms,
                    }
                    outcome["samples"].append(sample)
                    say(
                        f"  memory: {sent:,} events sent, RSS {sample['rss_mib']:.0f} MiB, "
                        f"PSS {sample['pss_mib']:.0f} MiB, "
                        f"{chunk.result.rps:,.0f} req/s"
                    )
            outcome["stopped_on_sigterm"] = server.stop().on_sigterm
        except (ServerFailed, RuntimeError) as exc:
            outcome["error"] = str(exc)[-2000:]
        outcome["rows"] = database.count_rows("webhook_events")
    outcome.update(
        events_sent=sent, non2xx=non2xx, complete=sent >= events, seconds=round(monotonic() - began)
    )
    last = outcome["samples"][-1] if outcome["samples"] else {}
    outcome["rss_mib_after"], outcome["pss_mib_after"] = last.get("rss_mib"), last.get("pss_mib")
    return outcome


def _memory(server: Server) -> dict[str, float]:
    """The server's processes summed: VmRSS, and Pss, which counts their shared pages once."""
    return {
        "rss_mib": round(sum(server.rss_kib().values()) / 1024, 1),
        "pss_mib": round(sum(server.pss_kib().values()) / 1024, 1),
    }
