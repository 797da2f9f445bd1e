"""Machine info, the results table (Markdown and plain text) and the lateness plot (SVG, by hand)."""
from __future__ import annotations

import math
import os
import platform
import sys
from importlib import metadata


def machine_info() -> dict[str, str]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        model = platform.processor() or "unknown"
    versions = []
    for pkg in ("moto", "pynamodb", "botocore", "boto3", "croniter", "APScheduler"):
        try:
            versions.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            pass
    return {
        "nproc": str(os.cpu_count() or "?"),
        "cpu": model,
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "os": f"{platform.system()} {platform.release()}",
        "packages": ", ".join(versions),
    }


def fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, int) or (abs(x) >= 1000 and float(x).is_integer()):
        return f"{int(x):,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}g}"


def ratio(project: float, baseline: float) -> str:
    if not baseline or math.isnan(baseline) or math.isnan(project):
        return "n/a"
    return f"{project / baseline:.3g}x"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


# --- the plot ----------------------------------------------------------------------------------------
COLORS = {"project": "#1f77b4", "baseline": "#d62728", "variant": "#2ca02c"}


def lateness_svg(series: list[tuple[str, str, str, list[tuple[float, float]]]], title: str) -> str:
    """Tail of start lateness, log-log: the fraction of runs that started at least x seconds late.

    ``series``: (label, color key, dash pattern, [(seconds, fraction)]); p99 is where a line crosses 0.01.
    """
    w, h = 920, 520
    left, right, top, bottom = 80, 280, 50, 60
    pw, ph = w - left - right, h - top - bottom
    x_lo, x_hi = -3, 3  # 1 ms .. 1000 s
    y_dec = 2  # 1 .. 0.01 at least
    for _, _, _, pts in series:
        if pts:
            x_hi = max(x_hi, math.ceil(math.log10(max(pts[-1][0], 1e-3))))
            y_dec = max(y_dec, math.ceil(-math.log10(min(f for _, f in pts))))

    def x(v: float) -> float:
        v = min(max(v, 10**x_lo), 10**x_hi)
        return left + (math.log10(v) - x_lo) / (x_hi - x_lo) * pw

    def y(f: float) -> float:
        f = min(max(f, 10**-y_dec), 1.0)
        return top + (-math.log10(f)) / y_dec * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'font-family="Helvetica, Arial, sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{left + pw / 2}" y="24" text-anchor="middle" font-size="15">{_esc(title)}</text>',
    ]
    names = {-3: "1 ms", -2: "10 ms", -1: "0.1 s", 0: "1 s", 1: "10 s", 2: "100 s", 3: "1000 s", 4: "10^4 s"}
    for e in range(x_lo, x_hi + 1):
        xx = x(10**e)
        out.append(f'<line x1="{xx:.1f}" y1="{top}" x2="{xx:.1f}" y2="{top + ph}" stroke="#e3e3e3"/>')
        out.append(f'<text x="{xx:.1f}" y="{top + ph + 18}" text-anchor="middle">{names.get(e, f"1e{e} s")}</text>')
    for d in range(0, y_dec + 1):
        yy = y(10**-d)
        out.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{left + pw}" y2="{yy:.1f}" stroke="#e3e3e3"/>')
        label = {0: "all", 1: "10 %", 2: "1 %", 3: "0.1 %"}.get(d, f"1e-{d}")
        out.append(f'<text x="{left - 8}" y="{yy + 4:.1f}" text-anchor="end">{label}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    tx, ty = x(1.0), y(0.01)
    out.append(f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{top + ph}" stroke="#777" stroke-dasharray="2,3"/>')
    out.append(f'<line x1="{left}" y1="{ty:.1f}" x2="{left + pw}" y2="{ty:.1f}" stroke="#777" stroke-dasharray="2,3"/>')
    out.append(f'<text x="{left + 8}" y="{top + ph - 24}" fill="#555">target p99 &lt; 1 s: a line must cross</text>')
    out.append(f'<text x="{left + 8}" y="{top + ph - 10}" fill="#555">the 1 % line left of the 1 s line</text>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 18}" text-anchor="middle">start lateness x '
               '(start - scheduled time; under 1 ms drawn at 1 ms)</text>')
    out.append(f'<text x="20" y="{top + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 20 {top + ph / 2})">runs starting at least x late</text>')
    for k, (label, color, dash, pts) in enumerate(series):
        if not pts:
            continue
        stroke = COLORS.get(color, color)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        path: list[str] = []
        for v, f in pts:
            path.append(f"{'M' if not path else 'L'}{x(v):.1f},{y(f):.1f}")
        out.append(f'<path d="{"".join(path)}" fill="none" stroke="{stroke}" stroke-width="2"{dash_attr}/>')
        ly, lx = top + 10 + k * 22, left + pw + 14
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 26}" y2="{ly}" stroke="{stroke}" stroke-width="2"{dash_attr}/>')
        out.append(f'<text x="{lx + 32}" y="{ly + 4}">{_esc(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
