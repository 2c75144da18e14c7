"""SWEEP/report.html and SWEEP/report.md: per setting, the spread over seeds of the final and
best Frechet distance, modes covered, collapse incidence and training time; the best and the
worst run's last grid side by side; a sortable table linking every run's own page.

The numbers come from minigan.sweep.collect (one dict per run); the plot is minigan.viz's.
"""

from __future__ import annotations

import html
import json
import os
import statistics
from pathlib import Path

from ..atomic import atomic_open
from .page import STYLE, _fmt, _img, _table

SORT = """
document.querySelectorAll("table.sortable th").forEach((th, col) => {
  th.addEventListener("click", () => {
    const body = th.closest("table").tBodies[0];
    const up = th.dataset.dir !== "up";
    th.closest("tr").querySelectorAll("th").forEach(h => delete h.dataset.dir);
    th.dataset.dir = up ? "up" : "down";
    const key = tr => {
      const td = tr.children[col];
      const v = td.dataset.v ?? td.textContent;
      const n = parseFloat(v);
      return v === "" ? null : (isNaN(n) ? v : n);
    };
    const rows = Array.from(body.rows).sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === null || y === null) return (x === null) - (y === null);
      return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
    });
    rows.forEach(r => body.appendChild(r));
  });
});
"""
EXTRA_STYLE = """
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[data-dir=up]::after { content: " \\25B2"; }
table.sortable th[data-dir=down]::after { content: " \\25BC"; }
td.failed { color: #b00020; text-align: left; } td.left { text-align: left; }
"""
# (key of a collect() row, column title, format)
RUN_COLUMNS = (("setting", "setting", "{}"), ("seed", "seed", "{}"), ("state", "state", "{}"),
               ("step", "steps", "{}"), ("final_fd", "final FD", "{:.2f}"),
               ("best_fd", "best FD", "{:.2f}"), ("modes", "modes", "{}"),
               ("collapse", "collapse warnings", "{}"), ("minutes", "minutes", "{:.1f}"))


def _spread(values: list) -> dict:
    v = [x for x in values if x is not None]
    if not v:
        return {}
    return {"n": len(v), "median": statistics.median(v), "min": min(v), "max": max(v),
            "std": statistics.stdev(v) if len(v) > 1 else 0.0}


def summarize(results: list[dict]) -> list[dict]:
    """Per setting (in the sweep's order): runs, finished, and the spread over seeds of each
    measure; collapse incidence is the share of finished runs with any warning."""
    out = []
    for setting in dict.fromkeys(r["setting"] for r in results):
        rs = [r for r in results if r["setting"] == setting]
        ok = [r for r in rs if r["state"] == "finished"]
        out.append({"setting": setting, "runs": len(rs), "finished": len(ok),
                    "failed": sum(r["state"] == "failed" for r in rs),
                    "final_fd": _spread([r["final_fd"] for r in ok]),
                    "best_fd": _spread([r["best_fd"] for r in ok]),
                    "modes": _spread([r["modes"] for r in ok]),
                    "collapsed": sum(r["collapse"] > 0 for r in ok),
                    "minutes": _spread([r["minutes"] for r in ok])})
    return out


def _range(s: dict, fmt: str = "{:.1f}") -> str:
    if not s:
        return ""
    if s["n"] == 1:
        return fmt.format(s["median"])
    return (f"{fmt.format(s['median'])} ({fmt.format(s['min'])}-{fmt.format(s['max'])}, "
            f"sd {fmt.format(s['std'])})")


def _summary_rows(summary: list[dict]) -> tuple[list[str], list[list]]:
    header = ["setting", "finished", "final FD: median (min-max, sd)", "best FD", "modes",
              "collapsed", "minutes"]
    rows = [[s["setting"], f"{s['finished']}/{s['runs']}", _range(s["final_fd"]),
             _range(s["best_fd"]), _range(s["modes"]), f"{s['collapsed']}/{s['finished']}",
             _range(s["minutes"])] for s in summary]
    return header, rows


def _extremes(results: list[dict]) -> tuple[dict | None, dict | None]:
    scored = [r for r in results if r["state"] == "finished" and r["final_fd"] is not None
              and r["last_grid"]]
    if not scored:
        return None, None
    scored.sort(key=lambda r: r["final_fd"])
    return scored[0], scored[-1]


def _plot(root: Path, results: list[dict], metric: str) -> Path | None:
    from .. import viz

    ok = [r for r in results if r["state"] == "finished"]
    if not ok:
        return None
    settings = list(dict.fromkeys(r["setting"] for r in results))

    def by(key):
        return {s: [r[key] for r in ok if r["setting"] == s] for s in settings}

    panels = [(f"final {metric}", by("final_fd")), (f"best {metric}", by("best_fd"))]
    if any(r["modes"] is not None for r in ok):
        panels.append(("modes covered", by("modes")))
    panels.append(("% collapse warned", {s: [r["collapse"] > 0 for r in ok if r["setting"] == s]
                                         for s in settings}))
    panels.append(("training minutes", by("minutes")))
    return viz.plot_distributions(panels, root / "spread.png",
                                  title="one point per seed; lower FD is better")


def _run_table(results: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t, _ in RUN_COLUMNS) + "<th>page</th>"
    rows = []
    for r in results:
        cells = []
        for key, _, fmt in RUN_COLUMNS:
            v = r.get(key)
            text = "" if v is None else fmt.format(v)
            cls = ' class="left"' if key in ("setting", "state") else ""
            cells.append(f'<td{cls} data-v="{html.escape(str("" if v is None else v))}">'
                         f"{html.escape(text)}</td>")
        link = (f'<a href="{html.escape(r["page"])}">{html.escape(r["name"])}</a>'
                if r["page"] else html.escape(r["name"]))
        cells.append(f'<td class="left">{link}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
        if r["state"] == "failed":
            rows.append(f'<tr><td></td><td colspan="{len(RUN_COLUMNS)}" class="failed">'
                        f'{html.escape(str(r["error"]))}</td></tr>')
    return (f'<table class="sortable"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def write_sweep_report(root: str | os.PathLike, results: list[dict],
                       title: str = "") -> tuple[Path, Path]:
    """Write SWEEP/report.html, SWEEP/report.md and SWEEP/spread.png (atomically)."""
    root = Path(root)
    metric = next((r["fd_metric"] for r in results if r["final_fd"] is not None), "FD")
    summary = summarize(results)
    plot = _plot(root, results, metric)
    best, worst = _extremes(results)
    title = title or f"sweep {root.name}"
    done = sum(r["state"] == "finished" for r in results)
    failed = sum(r["state"] == "failed" for r in results)
    meta = (f"{len(results)} runs: {done} finished, {failed} failed, "
            f"{len(results) - done - failed} not finished; FD is the {metric} "
            "(lower is better), at the end of training (final) and the lowest over its epochs "
            "(best)")
    header, rows = _summary_rows(summary)
    pair = ""
    if best is not None:
        pair = '<div class="row">' + "".join(
            f'<div><p>{which}: <a href="{html.escape(r["page"] or "")}">'
            f'{html.escape(r["name"])}</a>, final FD {r["final_fd"]:.2f}</p>'
            f'{_img(r["last_grid"], which + " run", pixel=True, width=360)}</div>'
            for which, r in (("best", best), ("worst", worst))) + "</div>"
    spec = json.loads((root / "sweep.json").read_text())["spec"] if (
        root / "sweep.json").is_file() else {}
    sections = [
        ("Per setting, over seeds", _table(header, rows)
         + (_img(plot.name, "spread over seeds") if plot else "")),
        ("Best and worst run, last grid", pair or '<p class="note">no finished run yet</p>'),
        ("Every run (click a column to sort)", _run_table(results)),
        ("Spec", f"<pre>{html.escape(json.dumps(spec, indent=1))}</pre>"),
    ]
    body = "\n".join(f"<h2>{html.escape(t)}</h2>\n{s}" for t, s in sections)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{STYLE}{EXTRA_STYLE}</style></head>"
            f"<body>\n<h1>{html.escape(title)}</h1><p class=\"meta\">{html.escape(meta)}</p>\n"
            f"{body}\n<script>{SORT}</script></body></html>\n")
    html_path, md_path = root / "report.html", root / "report.md"
    with atomic_open(html_path, "w") as f:
        f.write(page)
    with atomic_open(md_path, "w") as f:
        f.write(_markdown(title, meta, header, rows, plot, best, worst, results))
    return html_path, md_path


def _md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v).replace("|", "/") for v in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _markdown(title, meta, header, rows, plot, best, worst, results) -> str:
    parts = [f"# {title}\n\n{meta}.\n\n## Per setting, over seeds\n\n", _md_table(header, rows)]
    if plot:
        parts.append(f"\n![spread over seeds]({plot.name})\n")
    if best is not None:
        parts.append("\n## Best and worst run, last grid\n\n| best | worst |\n|---|---|\n"
                     f"| {best['name']}, final FD {best['final_fd']:.2f} | {worst['name']}, "
                     f"final FD {worst['final_fd']:.2f} |\n| ![best]({best['last_grid']}) | "
                     f"![worst]({worst['last_grid']}) |\n")
    cols = [t for _, t, _ in RUN_COLUMNS] + ["page"]
    run_rows = [[("" if r.get(k) is None else fmt.format(r[k])) for k, _, fmt in RUN_COLUMNS]
                + [f"[{r['name']}]({r['page']})" if r["page"] else r["name"]] for r in results]
    parts.append("\n## Every run\n\n" + _md_table(cols, run_rows))
    errors = [f"- {r['name']}: {r['error']}" for r in results if r["state"] == "failed"]
    if errors:
        parts.append("\n## Failed runs\n\n" + "\n".join(errors) + "\n")
    return "".join(parts)


__all__ = ["summarize", "write_sweep_report"]
