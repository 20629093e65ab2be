"""service/bench_headtohead.py: gangplace-auto against each other policy alone, over the whole grid."""
import math

from gangplace.service.bench_headtohead import head_to_head, head_to_head_section, verdict_line

TOL = 0.01


def _run(policy, wait, p99=100.0, jct=1000.0):
    return {"summary": {"policy": policy, "mean_queue_delay_s": wait, "p99_queue_delay_s": p99, "mean_jct_s": jct}}


def _rows(waits: dict[str, list[dict[str, float]]]):
    """{cell: [replica: {policy: mean wait}]} as the bench's rows."""
    return [(cell, i, _run(p, w)) for cell, reps in waits.items() for i, runs in enumerate(reps) for p, w in runs.items()]


def test_the_cell_ratio_is_the_geometric_mean_over_replicas_and_the_grid_ratio_over_cells():
    rows = _rows({"a": [{"gangplace-auto": 90.0, "kueue-tas": 100.0}, {"gangplace-auto": 121.0, "kueue-tas": 100.0}],
                  "b": [{"gangplace-auto": 50.0, "kueue-tas": 100.0}, {"gangplace-auto": 50.0, "kueue-tas": 100.0}],
                  "c": [{"gangplace-auto": 100.5, "kueue-tas": 100.0}, {"gangplace-auto": 100.0, "kueue-tas": 100.0}]})
    m = head_to_head(rows, "gangplace-auto", TOL)["kueue-tas"]["mean_queue_delay_s"]
    cell = [math.sqrt(0.9 * 1.21), 0.5, math.sqrt(1.005)]  # 1.044 behind, 0.5 ahead, 1.0025 within
    assert (m["cells"], m["in_mean"], m["ahead"], m["within"], m["behind"]) == (3, 3, 1, 1, 1)
    assert abs(m["geomean"] - math.prod(cell) ** (1 / 3)) < 1e-12
    assert min(cell) <= m["lo"] <= m["geomean"] <= m["hi"] <= max(cell)
    # the same runs give the same interval (fixed seed); another seed moves it a little, not the mean
    again = head_to_head(rows, "gangplace-auto", TOL)["kueue-tas"]["mean_queue_delay_s"]
    assert (again["lo"], again["hi"]) == (m["lo"], m["hi"])
    other = head_to_head(rows, "gangplace-auto", TOL, seed=7)["kueue-tas"]["mean_queue_delay_s"]
    assert other["geomean"] == m["geomean"]
    # a policy's interval does not depend on which other policies ran
    more = rows + [(cell, i, _run("random", 300.0)) for cell, i, _ in rows[::2]]
    more = [more[-1]] + more[:-1]  # random first seen before kueue-tas
    alone = head_to_head(more, "gangplace-auto", TOL)
    assert list(alone)[0] == "random" and alone["kueue-tas"]["mean_queue_delay_s"] == m


def test_one_ratio_everywhere_has_a_point_interval_and_zero_waits_are_counted_but_not_averaged():
    rows = _rows({c: [{"gangplace-auto": 80.0, "kai-binpack": 100.0}] for c in "abcd"})
    m = head_to_head(rows, "gangplace-auto", TOL)["kai-binpack"]["mean_queue_delay_s"]
    assert abs(m["lo"] - 0.8) < 1e-12 and abs(m["hi"] - 0.8) < 1e-12 and m["ahead"] == 4
    rows += _rows({"e": [{"gangplace-auto": 0.0, "kai-binpack": 5.0}], "f": [{"gangplace-auto": 3.0, "kai-binpack": 0.0}],
                   "g": [{"gangplace-auto": 0.0, "kai-binpack": 0.0}]})
    m = head_to_head(rows, "gangplace-auto", TOL)["kai-binpack"]["mean_queue_delay_s"]
    # e: ours waited 0 (ahead), f: only theirs did (behind), g: both 0 (a tie, ratio 1, in the mean)
    assert (m["cells"], m["in_mean"], m["ahead"], m["within"], m["behind"]) == (7, 5, 5, 1, 1)
    assert abs(m["geomean"] - 0.8 ** (4 / 5)) < 1e-12
    md, _ = head_to_head_section(rows)
    assert "| kai-binpack | 0.837 [" in md and "(2 not in the mean) | 5 / 1 / 1 |" in md


def test_the_section_says_who_is_ahead_and_puts_the_twin_last_apart_from_the_baselines():
    waits = {c: [{"gangplace-auto": 100.0, "gangplace-twin": 100.0 * (1.02 if c in "ab" else 0.98),
                  "kueue-tas": 95.0 if c == "a" else 104.0, "random": 300.0}] for c in "abcd"}
    md, doc = head_to_head_section(_rows(waits))
    assert list(doc) == ["gangplace-twin", "kueue-tas", "random"]
    kueue = doc["kueue-tas"]["mean_queue_delay_s"]
    assert (kueue["ahead"], kueue["behind"]) == (3, 1)
    assert abs(kueue["geomean"] - (100 / 95 * (100 / 104) ** 3) ** 0.25) < 1e-12
    lines = md.splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| policy")]
    assert [r.split(" |")[0] for r in rows] == ["| kueue-tas", "| random", "| gangplace-twin (tie-twin)"]
    assert rows[-1].split("|")[3].strip() == "2 / 0 / 2"  # the twin: as often ahead as behind
    summary = next(line for line in lines if line.startswith("- **mean wait**"))
    assert "ahead of every baseline; the closest is kueue-tas, 0.984 [" in summary  # never the twin
    assert summary.endswith("(its interval includes 1).")  # 1 of 4 cells behind: the interval reaches past 1
    # ours behind one baseline on the grid's geometric mean: the line names it
    waits = {c: [{"gangplace-auto": 100.0, "kueue-tas": 90.0, "random": 300.0}] for c in "ab"}
    md, _ = head_to_head_section(_rows(waits), replicas=3)
    assert "- **mean wait**, geometric mean over the cells: behind kueue-tas, 1.111 [1.111-1.111]." in md
    assert "per cell the geometric mean over the 3 replicas" in md
    assert "No cell ran" in head_to_head_section(_rows({"a": [{"kueue-tas": 1.0}]}))[0]
    # level with the closest baseline: not "ahead"
    md, doc = head_to_head_section(_rows({c: [{"gangplace-auto": 100.0, "kueue-tas": 100.0, "random": 200.0}]
                                          for c in "ab"}))
    assert "- **mean wait**, geometric mean over the cells: level with the closest baseline, ahead of the rest; " \
           "the closest is kueue-tas, 1.000 [1.000-1.000] (its interval includes 1)." in md
    assert verdict_line(doc).startswith("- **head to head** (each baseline alone, geometric mean over the cells; "
                                        "section \"Head to head\"): mean wait: level with the closest baseline")
    assert verdict_line({}) == ""
    # one cell: its ratio, and no interval over the cells
    md, doc = head_to_head_section(_rows({"a": [{"gangplace-auto": 100.0, "kueue-tas": 80.0}]}))
    assert math.isnan(doc["kueue-tas"]["mean_queue_delay_s"]["lo"])
    assert "behind kueue-tas, 1.250." in md and "| kueue-tas | 1.250 | 0 / 0 / 1 |" in md
