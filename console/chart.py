"""Events stored per hour over the last 24 hours, by provider: the bars of an inline SVG we draw."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

HOURS = 24
WIDTH, HEIGHT = 720, 160  # the SVG's viewBox; CSS scales it to the page
PLOT_TOP, PLOT_BOTTOM, PLOT_LEFT = 10, 130, 40


@dataclass(frozen=True, slots=True)
class Bar:
    provider: str
    hour: datetime
    count: int
    x: float
    y: float
    width: float
    height: float


@dataclass(slots=True)
class Chart:
    start: datetime  # the first hour drawn (naive UTC)
    bars: list[Bar] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)  # provider -> events in the window
    peak: int = 0  # the tallest hour's events, the y axis' top
    hour_labels: list[tuple[float, str]] = field(default_factory=list)


def build(counts: Iterable[tuple[str, datetime, int]], *, now: datetime) -> Chart:
    """Stacked bars, one column per hour from 23 hours before `now`'s hour up to it (naive UTC)."""
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)
    chart = Chart(start=first)
    per_hour: dict[int, list[tuple[str, int]]] = {}
    for provider, hour, count in counts:
        slot = int((hour - first) / timedelta(hours=1))
        if 0 <= slot < HOURS:
            per_hour.setdefault(slot, []).append((provider, count))
            chart.totals[provider] = chart.totals.get(provider, 0) + count
    chart.peak = max((sum(c for _, c in stack) for stack in per_hour.values()), default=0)
    column = (WIDTH - PLOT_LEFT) / HOURS
    scale = (PLOT_BOTTOM - PLOT_TOP) / chart.peak if chart.peak else 0.0
    for slot, stack in sorted(per_hour.items()):
        y = float(PLOT_BOTTOM)
        for provider, count in sorted(stack):
            height = max(count * scale, 1.0)
            y -= height
            chart.bars.append(
                Bar(
                    provider,
                    first + timedelta(hours=slot),
                    count,
                    PLOT_LEFT + slot * column + 2,
                    y,
                    column - 4,
                    height,
                )
            )
    chart.hour_labels = [
        (PLOT_LEFT + slot * column + column / 2, (first + timedelta(hours=slot)).strftime("%H:00"))
        for slot in range(0, HOURS, 6)
    ]
    return chart
