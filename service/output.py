"""Shared CLI output helpers: JSON to stdout, rich tables for people."""
from __future__ import annotations

import sys
import threading
import time

import orjson


def print_json(obj) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n")


def fmt_duration(seconds: float, digits: int = 1) -> str:
    """Seconds for people: "42 s", "3.5 min", "4.6 h", "1.1 d" (``digits`` after the point for h and d)."""
    if seconds >= 86400:
        return f"{seconds / 86400:.{digits}f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.{digits}f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


def console():
    from rich.console import Console
    return Console()


def optimality_text(placement, requested_placer: str = "") -> str:
    """"proved optimal" / "gap 3.1%" / "not proved", and why an exact request was answered by the heuristic."""
    if not placement.placed:
        return ""
    text = "proved optimal" if placement.optimal else (
        f"gap {placement.gap:.1%}" if placement.gap is not None else "not proved")
    if requested_placer in ("cpsat", "auto") and placement.placer == "heuristic":
        text += ("; the heuristic's answer was proved optimal, so it was kept" if placement.optimal
                 else "; the exact placers found nothing better within the time limit")
    return text


def print_placement_table(placement, *, node_path=None, requested_placer: str = "", reservation: str = "",
                          con=None) -> None:
    """One gang's answer for people: a status line, domains used per level, one row per pod.

    ``node_path(name) -> str`` adds each node's topology path; ``reservation`` says what is held and
    for how long. ``gangplace place`` and ``gangplace grpc place`` both print this.
    """
    from rich.table import Table
    con = con or console()
    status = "[green]placed[/]" if placement.placed else "[red]not placed[/]"
    opt = optimality_text(placement, requested_placer)
    con.print(f"gang [bold]{placement.gang}[/]: {status} by {placement.placer or '-'}"
              f"{f' ({opt})' if opt else ''} in {placement.elapsed_ms:.2f} ms"
              + (f" (+ {placement.solver_import_ms:.0f} ms loading the CP-SAT solver)" if placement.solver_import_ms else ""))
    if reservation:
        con.print(reservation)
    if not placement.placed:
        con.print(placement.reason)
        return
    summary = Table("level", "domains used", "free GPUs left in them")
    for level, n in placement.domains_used.items():
        summary.add_row(level, str(n), str(placement.stranded_gpus.get(level, "")))
    con.print(summary)
    pods = Table("pod set", "index", "node", *(("path",) if node_path else ()))
    for a in placement.pods:
        pods.add_row(a.pod_set, str(a.index), a.node, *((node_path(a.node),) if node_path else ()))
    con.print(pods)


def print_batch_table(rows, header: str, con=None) -> None:
    """A batch's answers: ``rows`` of (placement, priority or "", GPUs); reasons below the table, whole.

    The reasons are long sentences: inside a column they wrap one word per line at 80 columns, so
    they are printed under the table, a paragraph per gang left out.
    """
    from rich.table import Table
    con = con or console()
    con.print(header)
    t = Table("gang", "priority", "placed", "GPUs", "domains used", "placer", "optimal")
    t.columns[5].no_wrap = True
    for p, priority, gpus in rows:
        t.add_row(p.gang, str(priority), "yes" if p.placed else "[red]no[/]", str(gpus) if p.placed else "",
                  " ".join(f"{k}={v}" for k, v in p.domains_used.items()), p.placer or "-",
                  "yes" if p.optimal else "")
    con.print(t)
    for p, _, _ in rows:
        if not p.placed:
            con.print(f"{p.gang}: {p.reason}")


def print_preemption(gang: str, *, feasible: bool, victims, evicted_gpus: int, cost, optimal: bool, reason: str,
                     con=None) -> None:
    """A preemption plan: its verdict with the reason, and one row per victim gang."""
    from rich.table import Table
    con = con or console()
    if not feasible:
        con.print(f"gang [bold]{gang}[/]: [red]cannot be placed by preemption[/]: {reason}")
    elif not victims:
        con.print(f"gang [bold]{gang}[/] fits without preemption" + (f": {reason}" if reason else ""))
    else:
        con.print(f"gang [bold]{gang}[/]: evict {len(victims)} gang(s), {evicted_gpus} GPUs, "
                  f"cost {cost}{' (proved cheapest)' if optimal else ''}" + (f"; {reason}" if reason else ""))
        t = Table("victim", "priority", "GPUs", "nodes")
        for v in victims:
            t.add_row(v["gang"], str(v["priority"]), str(v["gpus"]), ", ".join(v["nodes"]))
        con.print(t)


class Heartbeat:
    """Progress for an output that is not a terminal (CI logs, pipes, files): a line on ``stream``
    at least every ``every_s`` seconds while work runs, and one at the end.

        with Heartbeat("simulating", total=len(specs)) as hb:
            for r in results:
                hb.advance(last=r.label)

    A terminal gets rich's live progress bar instead; this is what replaces it when the bar is off,
    so a long run never goes silent.
    """

    def __init__(self, title: str, total: int, *, every_s: float = 10.0, stream=None):
        self.title, self.total, self.every_s = title, total, every_s
        self.stream = stream if stream is not None else sys.stderr
        self.done, self.last = 0, ""
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._line(final=True)

    def advance(self, n: int = 1, last: str = "") -> None:
        self.done += n
        if last:
            self.last = last

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            self._line()

    def _line(self, final: bool = False) -> None:
        elapsed = time.monotonic() - self._t0
        text = (f"{self.title}: {self.done}/{self.total} done in {elapsed:.0f} s" if final else
                f"{self.title}: {self.done}/{self.total} done, {elapsed:.0f} s elapsed"
                + (f", last: {self.last}" if self.last else ""))
        print(text, file=self.stream, flush=True)
