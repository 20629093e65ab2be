"""``gangplace bench``: a tiny configuration writes the whole report folder."""
import json
import math

from gangplace.service.cli import main


def test_a_tiny_bench_writes_tables_plots_and_machine_readable_results(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "--quick", "--out", str(out), "--sizes", "2048", "--sim-gpus", "256", "--max-jobs", "80",
                 "--policies", "gangplace-heuristic,kueue-tas,k8s-default", "--traces", "helios", "--skip", "service"])
    assert code == 0
    md = (out / "report.md").read_text()
    assert "## Placement latency vs cluster size" in md and "## Which policy wins where" in md
    assert "kueue-tas" in md and "Machine:" in md
    doc = json.loads((out / "results.json").read_text())
    assert {r["policy"] for r in doc["runs"]} == {"gangplace-heuristic", "kueue-tas", "k8s-default"}
    assert {r["placer"] for r in doc["latency"]} == {"heuristic", "auto"}
    for name in ("results.parquet", "latency.parquet", "timeseries.parquet", "latency_vs_size.png", "g0-helios-racks.png",
                 "g0-helios-delay-cdf.png", "g0-helios-utilization.png", "g0-helios-queue.png",
                 "g0-helios-locality.png"):
        assert (out / name).is_file(), name


def test_an_unknown_section_to_skip_is_rejected(tmp_path, capsys):
    assert main(["bench", "--out", str(tmp_path), "--skip", "everything"]) == 2
    assert "--skip" in capsys.readouterr().err


def test_the_quality_grid_crosses_loads_schedulers_backgrounds_and_presets(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "--quick", "--out", str(out), "--sim-gpus", "256", "--max-jobs", "20",
                 "--policies", "gangplace-auto,kueue-tas", "--traces", "helios", "--skip", "latency,service",
                 "--loads", "0.7,0.95", "--schedulers", "fifo,easy", "--fills", "0,0.3",
                 "--presets", "dgx-h100,gb200-nvl72"])
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    cells = {(s["preset"], s["fill"], s["load"], s["scheduler"]) for s in (run["spec"] for run in doc["runs"])}
    assert len(cells) == 16 and len(doc["runs"]) == 32
    md = (out / "report.md").read_text()
    assert "## Verdict" in md and "**mean wait**: `gangplace-auto` wins or is within 1% of every baseline in" in md
    assert "of 16 cells" in md


def test_the_verdict_names_the_cells_where_a_baseline_wins_by_more_than_one_percent():
    from gangplace.service.cmd_bench import verdict

    def run(policy, wait, p99=100.0, jct=1000.0, load=0.7):
        spec = {"trace": "helios", "preset": "dgx-h100", "gpus": 2048, "fill": 0.0, "load": load,
                "scheduler": "easy", "seed": 1}
        return {"spec": spec, "summary": {"policy": policy, "mean_queue_delay_s": wait, "p99_queue_delay_s": p99,
                                          "mean_jct_s": jct, "optimal_locality_fraction": 1.0}}
    text = verdict([run("gangplace-auto", 100.5), run("kueue-tas", 100.0),  # within 1 %: not beaten
                    run("gangplace-auto", 120.0, load=0.95), run("kueue-tas", 100.0, load=0.95)])
    assert "in 1 of 2 cells. Beaten in: `helios` dgx-h100 2048 GPUs, fill 0.0, load 0.95, easy, seed 1: kueue-tas by 20.0 %" in text
    assert "**p99 wait**: `gangplace-auto` wins or is within 1% of every baseline in 2 of 2 cells." in text
    # a baseline that waits 0 (a near-idle cell) beats any wait of ours: named, not a division by zero
    text = verdict([run("gangplace-auto", 1.0, p99=5.0), run("kueue-tas", 1.0, p99=0.0),
                    run("gangplace-auto", 0.0, p99=0.0, load=0.95), run("kueue-tas", 0.0, p99=0.0, load=0.95)])
    assert "**p99 wait**: `gangplace-auto` wins or is within 1% of every baseline in 1 of 2 cells. Beaten in: " \
           "`helios` dgx-h100 2048 GPUs, fill 0.0, load 0.7, easy, seed 1: kueue-tas by inf %." in text


def _summary(policy, wait, p99=100.0, jct=1000.0):
    return {"policy": policy, "mean_queue_delay_s": wait, "p99_queue_delay_s": p99, "mean_jct_s": jct,
            "optimal_locality_fraction": 1.0}


def test_replica_loads_are_distinct_evenly_spread_and_keep_the_nominal_load_in_the_middle():
    from gangplace.engine.model.errors import InvalidRequest
    from gangplace.service.cmd_bench import replica_factors
    assert replica_factors(1) == (1.0,)
    five = replica_factors(5, 0.03)
    assert len(set(five)) == 5 and five[2] == 1.0
    assert [round(f, 9) for f in five] == [0.97, 0.985, 1.0, 1.015, 1.03]
    assert 1.0 not in replica_factors(4, 0.03) and len(set(replica_factors(4, 0.03))) == 4
    for bad in ((0, 0.03), (3, 0.0), (3, 0.6)):
        try:
            replica_factors(*bad)
        except InvalidRequest:
            continue
        raise AssertionError(f"accepted {bad}")


def test_the_replicated_ratio_takes_the_best_baseline_of_each_replica():
    from gangplace.service.cmd_bench import replica_ratios
    cell = ("helios", "dgx-h100", 2048, 0.0, 0.7, "fifo", 1)
    waits = {0: {"gangplace-auto": 110.0, "kueue-tas": 100.0, "kai-binpack": 120.0, "gangplace-heuristic": 50.0},
             1: {"gangplace-auto": 90.0, "kueue-tas": 120.0, "kai-binpack": 100.0, "gangplace-heuristic": 50.0},
             2: {"gangplace-auto": 100.0, "kueue-tas": 100.0, "kai-binpack": 100.0, "gangplace-heuristic": 50.0}}
    rows = [(cell, i, {"summary": _summary(p, w)}) for i, runs in waits.items() for p, w in runs.items()]
    m = replica_ratios(rows)[cell]["mean_queue_delay_s"]
    # replica 1 is judged against kai-binpack (its best), not kueue-tas (the best of replica 0);
    # another gangplace policy is never the baseline
    assert m["best"][:2] == ["kueue-tas", "kai-binpack"]
    assert [round(x, 9) for x in m["ratios"]] == [1.1, 0.9, 1.0]
    assert abs(m["geomean"] - (1.1 * 0.9 * 1.0) ** (1 / 3)) < 1e-12
    assert (m["min"], m["max"], m["ahead"]) == (0.9, 1.1, 2)


def test_replicas_run_every_policy_on_the_same_k_loads_and_keep_the_nominal_report(tmp_path, capsys):
    common = ["bench", "--quick", "--sim-gpus", "256", "--max-jobs", "150", "--traces", "helios",
              "--policies", "gangplace-auto,kueue-tas,k8s-default", "--skip", "latency,service",
              "--loads", "0.95", "--schedulers", "fifo,easy", "--fills", "0.3"]
    assert main(common + ["--out", str(tmp_path / "k1")]) == 0
    assert main(common + ["--out", str(tmp_path / "k1b"), "--replicas", "1"]) == 0
    assert main(common + ["--out", str(tmp_path / "k3"), "--replicas", "3"]) == 0
    docs = {k: json.loads((tmp_path / k / "results.json").read_text()) for k in ("k1", "k1b", "k3")}
    md = {k: (tmp_path / k / "report.md").read_text() for k in docs}
    keys = ("policy", "mean_queue_delay_s", "p99_queue_delay_s", "mean_jct_s", "optimal_locality_fraction")
    nominal = [{k: r[k] for k in keys} | {"load": r["spec"]["load"]} for r in docs["k1"]["runs"]]
    for k in ("k1b", "k3"):  # K = 1 is today's run; K = 3 keeps the nominal runs as the report's results
        assert [{k: r[k] for k in keys} | {"load": r["spec"]["load"]} for r in docs[k]["runs"]] == nominal
    assert "replicated" not in docs["k1b"] and "## Replicated verdict" not in md["k1b"]
    def nominal_verdict(text):  # the verdict's lines but its head-to-head summary (which uses the replicas)
        return [line for line in text.split("## Verdict")[1].split("##")[0].splitlines() if "**head to head**" not in line]
    assert nominal_verdict(md["k1"]) == nominal_verdict(md["k3"])
    # the replicas off the nominal load: 2 loads x 2 cells x 3 policies, each load shared by every policy
    extra = docs["k3"]["replica_runs"]
    assert len(extra) == 12
    loads = {}
    for r in extra:
        loads.setdefault((r["spec"]["scheduler"], r["spec"]["load"]), set()).add(r["policy"])
    assert sorted({load for _, load in loads}) == [round(0.95 * 0.97, 6), round(0.95 * 1.03, 6)]
    assert all(p == {"gangplace-auto", "kueue-tas", "k8s-default"} for p in loads.values())
    # the three loads are three different queue runs (same jobs, arrivals compressed differently)
    waits = {r["spec"]["load"]: r["mean_queue_delay_s"] for r in docs["k3"]["runs"] + extra
             if r["policy"] == "k8s-default" and r["spec"]["scheduler"] == "fifo"}
    assert len(waits) == 3 and len(set(waits.values())) == 3
    # the table's ratios are recomputed from the runs: replica 1 is the nominal run
    rep = docs["k3"]["replicated"]
    assert rep["factors"][1] == 1.0 and len(rep["cells"]) == 2
    for c in rep["cells"]:
        def run(policy, load):
            pool = docs["k3"]["runs"] + extra
            return next(r for r in pool if r["policy"] == policy and r["spec"]["load"] == load
                        and r["spec"]["scheduler"] == c["cell"]["scheduler"])
        for i, f in enumerate(rep["factors"]):
            load = 0.95 if f == 1.0 else round(0.95 * f, 6)
            mine = run("gangplace-auto", load)["mean_queue_delay_s"]
            best = min(run(p, load)["mean_queue_delay_s"] for p in ("kueue-tas", "k8s-default"))
            want = 1.0 if abs(mine - best) <= 1e-9 else mine / best
            assert abs(c["mean_queue_delay_s"]["ratios"][i] - want) < 1e-12
    assert "## Replicated verdict" in md["k3"] and "on the geometric mean over 3 replicas" in md["k3"]
    # head to head, recomputed from the runs: per cell the geometric mean over the 3 loads of ours over
    # kueue-tas, then over the cells; ahead / within / behind by the 1 % bar
    h2h = docs["k3"]["head_to_head"]["kueue-tas"]["mean_queue_delay_s"]
    per_cell = []
    for sched in ("fifo", "easy"):
        logs = []
        for f in rep["factors"]:
            load = 0.95 if f == 1.0 else round(0.95 * f, 6)
            pick = {r["policy"]: r["mean_queue_delay_s"] for r in docs["k3"]["runs"] + extra
                    if r["spec"]["load"] == load and r["spec"]["scheduler"] == sched}
            mine, theirs = pick["gangplace-auto"], pick["kueue-tas"]
            assert mine > 0 and theirs > 0  # loaded cells: every ratio is in the mean
            logs.append(0.0 if abs(mine - theirs) <= 1e-9 else math.log(mine / theirs))
        per_cell.append(sum(logs) / len(logs))
    assert abs(h2h["geomean"] - math.exp(sum(per_cell) / 2)) < 1e-9
    assert (h2h["ahead"], h2h["behind"]) == (sum(x < -math.log(1.01) for x in per_cell),
                                             sum(x > math.log(1.01) for x in per_cell))
    section = md["k3"].split("## Head to head: gangplace-auto against each policy")[1].split("\n## ")[0]
    assert md["k3"].index("## Replicated verdict") < md["k3"].index("## Head to head")
    assert "per cell the geometric mean over the 3 replicas" in section and "| kueue-tas | " in section
    assert "## Head to head" in md["k1"] and "per cell the nominal run" in md["k1"]
    # the verdict ends with the head-to-head's summary, the same text as the section's per-metric lines
    verdict = md["k3"].split("## Verdict")[1].split("\n## ")[0].strip().splitlines()
    assert verdict[-1].startswith("- **head to head** (each baseline alone, geometric mean over the cells;")
    for line in section.splitlines():
        if line.startswith("- **mean wait**, geometric mean over the cells: "):
            assert "mean wait: " + line.split("over the cells: ")[1].rstrip(".") in verdict[-1]
