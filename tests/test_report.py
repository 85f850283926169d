"""The report (harness.report) and the trials table (harness.results) on synthetic run folders: no training.

The run folders are written through harness.store.RunStore, with ok, oom, timeout and error trials, both
strategies, several dataset sizes, batch sizes and frozen depths, repeats, and a largest-batch search record.
"""

from __future__ import annotations

import html.parser
import io
import json
import math
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from harness import results
from harness.report import print_summary, render_report
from harness.report.analysis import analyse
from harness.store import RunStore

EVIL_NAME = 'quick<script>alert("name")</script>'
EVIL_SOURCE = "data/<script>alert('path')</script>.csv"
GIB = 1 << 30

ENV = {
    "python": "3.11.2", "torch": "2.13.0", "transformers": "4.99.0", "datasets": "3.0.0",
    "cpu": {"model": "Intel(R) Xeon(R) Test CPU", "count": 2}, "ram_gib": 8.0,
    "gpus": [{"name": "Test GPU 80GB", "memory_mib": 81559}], "driver": "555.1",
    "git_commit": "0123abc", "host": "node-1", "nodes": ["node-1"],
}


def grid_text(name: str, target: float | None = None) -> str:
    text = f"name = {json.dumps(name)}\n\n[data]\nsource = {json.dumps(EVIL_SOURCE)}\n\n[grid]\nbatch_size = [8, 32, 128]\n"
    if target is not None:
        text += f"\n[report]\ntarget_accuracy = {target}\nextrapolate_rows = 20000\n"
    return text


def record(run_name: str, tid: str, *, size=200, batch=8, frozen=0, strategy="lab", repeat=0, status="ok",
           acc=0.8, spe=1.0, epochs=3, cost_per_s=2.0 / 3600, gpu_mib=1000.0, epochs_done=None, error=None,
           oom=None, search=None, budget_gpu=8 * GIB, index=0):
    n_done = epochs if epochs_done is None else epochs_done
    gap = {0: 0.12, 4: 0.06, "all": 0.015}[frozen]  # frozen=all plateaus early, frozen=0 still climbs
    overfit = frozen == 0 and size == 200  # validation loss turns up in the last epoch
    eps = []
    for e in range(1, n_done + 1):
        frac = e / epochs
        late = overfit and e == epochs and e > 1
        eps.append({
            "epoch": e, "seconds": spe * (1 + 0.02 * e), "train_seconds": spe * 0.9, "eval_seconds": spe * 0.1,
            "train_loss": 0.7 - (acc - 0.45) * frac, "train_accuracy": acc - gap * (1 - frac) + 0.02,
            "val_loss": 0.69 - (acc - 0.5) * 0.8 * frac ** 0.7 + (0.06 if late else 0),
            "val_accuracy": acc - gap * (1 - frac) ** 1.5 - (0.004 if late else 0),
            "samples_per_s": size * 0.9 / spe, "tokens_per_s": size * 60 / spe, "padded_tokens_per_s": size * 128 / spe,
        })
    ok = status == "ok"
    total = sum(e["seconds"] for e in eps) + 2.0 if eps else 1.5
    params = {"model": "embedded:minilm-l6", "max_length": 128, "source": EVIL_SOURCE, "dataset_size": size,
              "batch_size": batch, "eval_batch_size": batch, "frozen_layers": frozen, "device": "cuda",
              "strategy": strategy, "epochs": epochs, "optimizer": "sgd", "learning_rate": 0.005,
              "seed": 324 + repeat, "data_seed": 324,
              "precision": "fp32" if strategy == "lab" else "auto", "cache_frozen": strategy == "fast"}
    if search:
        params["search"] = search
    return {
        "schema": 1, "run_name": run_name, "trial_id": tid, "index": index, "repeat": repeat, "params": params,
        "status": status, "error": error, "started_at": "2026-11-23T06:00:00+00:00",
        "finished_at": "2026-11-23T06:01:00+00:00", "host": "node-1", "device_name": "Test GPU 80GB",
        "n_train": int(size * 0.9), "n_val": int(size * 0.1), "num_labels": 2,
        "trainable_params": {0: 22_714_370, 4: 7_100_000, "all": 770}[frozen], "total_params": 22_714_370,
        "phases": {"load_data": 0.1, "tokenize": 0.1, "load_model": 0.5, "cache": None},
        "epochs": eps,
        "seconds_total": total if (ok or eps) else None,
        "samples_per_s": size * 0.9 / spe if ok else None,
        "tokens_per_s": size * 60 / spe if ok else None,
        "memory": {"cpu_peak_rss_mib": 800.0 + batch, "cpu_baseline_rss_mib": 400.0, "cpu_maxrss_mib": 810.0 + batch,
                   "cuda_peak_allocated_mib": gpu_mib * 0.8, "cuda_peak_reserved_mib": gpu_mib * 0.9,
                   "gpu_peak_used_mib": gpu_mib, "gpu_total_mib": 81559.0},
        "memory_note": "cpu: psutil RSS every 10 ms; gpu: NVML device used",
        "memory_budget": {"cpu_bytes": None, "gpu_bytes": budget_gpu},
        "energy_j": {"cpu": None, "gpu": 150.0 * total if total else None},
        "energy_note": "cpu: RAPL not readable; gpu: NVML energy counter",
        "cost_usd": total * cost_per_s if total else None,
        "cost_note": "cuda at 2.00 USD per device-hour",
        "flops": 1e12, "mfu": 0.21, "mfu_note": "peak from the device table",
        "oom": oom,
    }


def synthetic_records(run_name: str, repeats_extra: int = 1) -> list[dict]:
    """lab and fast x sizes 200/400/800 x batch 8/32/128 x frozen 0/4/all, plus repeats, failures, a search."""
    recs = []
    i = 0
    for strategy in ("lab", "fast"):
        for size in (200, 400, 800):
            for batch in (8, 32, 128):
                for frozen in (0, 4, "all"):
                    depth = {0: 0.0, 4: 0.5, "all": 1.0}[frozen]
                    acc = 0.70 + 0.15 * (1 - depth) * (size / 800) ** 0.5 - (0.01 if strategy == "fast" else 0)
                    spe = (0.4 + size * 0.004 * (1 - 0.6 * depth)) * (8 / batch) ** 0.3
                    spe *= 0.55 if strategy == "fast" else 1.0
                    gpu = 600 + batch * (60 - 50 * depth) * (0.7 if strategy == "fast" else 1)
                    kw = dict(size=size, batch=batch, frozen=frozen, strategy=strategy, acc=acc, spe=spe,
                              gpu_mib=gpu, index=i)
                    tid = f"t{i:03d}"
                    if batch == 128 and frozen == 0:
                        recs.append(record(run_name, tid, status="oom", epochs_done=0,
                                           oom={"phase": "backward", "epoch": 1},
                                           error="CUDA out of memory. Tried to allocate 2.00 GiB", **kw))
                    elif strategy == "lab" and size == 800 and batch == 8 and frozen == 0:
                        recs.append(record(run_name, tid, status="timeout", epochs_done=2,
                                           error="trial exceeded its time limit of 600 s", **kw))
                    elif strategy == "fast" and size == 400 and batch == 32 and frozen == 4:
                        recs.append(record(run_name, tid, status="error", epochs_done=0,
                                           error="RuntimeError: <b>boom</b> | in forward", **kw))
                    else:
                        recs.append(record(run_name, tid, **kw))
                        if size == 200 and batch == 8:
                            for rep in range(1, repeats_extra + 1):
                                recs.append(record(run_name, f"{tid}r{rep}", repeat=rep, **{
                                    **kw, "acc": acc + 0.01 * rep, "spe": spe * (1 + 0.05 * rep)}))
                    i += 1
    sr = record(run_name, "search1", batch=64, frozen=4, status="ok", search="max_batch", gpu_mib=4000.0, epochs=1)
    sr["max_batch"] = 96
    recs.append(sr)
    probe = record(run_name, "probe1", batch=256, frozen="all", status="oom", epochs=1, epochs_done=0,
                   oom={"phase": "forward", "epoch": 1})
    probe["kind"] = "probe"  # a search step as the runner writes it
    recs.append(probe)
    return recs


def write_run(root: Path, name: str, recs: list[dict], grid: str | None = None) -> Path:
    store = RunStore(root)
    store.create(grid if grid is not None else grid_text(name), ENV)
    for r in recs:
        store.append(r)
    return root


@pytest.fixture(scope="module")
def run_one(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs") / "quick-20261123T060000Z"
    return write_run(root, EVIL_NAME, synthetic_records(EVIL_NAME))


@pytest.fixture(scope="module")
def run_two(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs") / "second-20261124T060000Z"
    recs = [r for r in synthetic_records("second", repeats_extra=0) if r["params"]["dataset_size"] == 200]
    for r in recs:
        r["trial_id"] = "b-" + r["trial_id"]
        r["repeat"] = 3
        r["params"]["seed"] = 999
    return write_run(root, "second", recs)


@pytest.fixture(scope="module")
def report_one(run_one, tmp_path_factory):
    return render_report([run_one], tmp_path_factory.mktemp("rep") / "one")


@pytest.fixture(scope="module")
def report_merged(run_one, run_two, tmp_path_factory):
    return render_report([run_one, run_two], tmp_path_factory.mktemp("rep") / "merged")


SECTION_TITLES = {
    "recommendation": "Recommendation",
    "setup": "Set-up",
    "trials": "Trials",
    "configurations": "Configurations across repeats",
    "problems": "OOM, timeouts and errors",
    "frontier": "Accuracy vs cost and time",
    "memory": "Memory: peak by batch size and frozen depth",
    "curves": "Learning curves",
    "scaling": "Time per epoch vs dataset size",
    "forecast": "What more data or more epochs would buy",
    "frozen": "Frozen depth: accuracy against time and memory",
    "strategies": "lab vs fast",
}
FIGURES = ["accuracy_vs_cost", "accuracy_vs_time", "memory_heatmap", "learning_curves", "time_vs_size",
           "frozen_depth", "strategies", "data_curve", "epoch_curve"]


class _Checker(html.parser.HTMLParser):
    """Start and end tags balance (void elements aside); counts tags and collects text."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: dict[str, int] = {}
        self.ids: list[str] = []
        self.text: list[str] = []
        self.img_src: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.img_src.append(a.get("src", ""))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse_html(text: str) -> _Checker:
    p = _Checker()
    p.feed(text)
    p.close()
    assert not p.errors, p.errors[:5]
    assert not p.stack, p.stack
    return p


# -- the report -----------------------------------------------------------------------------------------------
def test_every_section_and_figure(report_one):
    r = report_one
    assert r.sections == list(SECTION_TITLES)
    md = r.markdown_path.read_text(encoding="utf-8")
    page = r.html_path.read_text(encoding="utf-8")
    for key, title in SECTION_TITLES.items():
        assert f"## {title}" in md, key
        assert f'<section id="{key}">' in page, key
    assert sorted(r.figures) == sorted(FIGURES)
    assert sorted(r.analysis.searches["trial_id"]) == ["probe1", "search1"]  # listed, not analysed
    assert "probe1" not in set(r.analysis.trials["trial_id"])
    for key in FIGURES:
        f = r.figures[key]
        assert f.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f.png.stat().st_size > 5000
        assert b"<svg" in f.svg.read_bytes()[:2000]
        assert f"](figures/{key}.png)" in md  # relative PNG path
    for p in (r.markdown_path, r.html_path, r.csv_path, r.parquet_path):
        assert p.is_file() and p.parent == r.out_dir
    # units and the numbers readers look for
    assert "MiB" in md and " s" in md and "$" in md and " %" in md and " J" in md
    assert "the full set (56,000 rows) would take" in md
    assert "OOM" in md and "timeout" in md and "error" in md
    assert "oom (backward, epoch 1)" in md


def test_html_parses_and_is_self_contained(report_one):
    page = report_one.html_path.read_text(encoding="utf-8")
    p = parse_html(page)
    assert p.tags.get("script") == 1  # ours only
    assert p.tags.get("style") == 1
    assert p.tags.get("img") == len(FIGURES)
    assert all(s.startswith("data:image/png;base64,") for s in p.img_src)
    assert "http://" not in page and "https://" not in page and "src=\"figures" not in page
    assert 'class="sortable"' in page and 'id="table-trials"' in page
    # every trial has a row in the trials table, with a numeric sort key on the accuracy cells
    n_trials = len(report_one.analysis.trials)
    assert n_trials == len(results.load(report_one.run_dirs[0])) - 2  # the two search records aside
    table = page[page.index('id="table-trials"'):]
    table = table[: table.index("</table>")]
    assert table.count("<tr>") == n_trials + 1  # the header row and one row per trial
    assert 'data-v="0.' in table


def test_user_strings_escaped(report_one):
    md = report_one.markdown_path.read_text(encoding="utf-8")
    page = report_one.html_path.read_text(encoding="utf-8")
    for text in (md, page):
        assert "<script>alert" not in text
        assert "<b>boom" not in text
        assert "&lt;script&gt;alert(" in text  # the grid name, shown as text
    p = parse_html(page)
    shown = "".join(p.text)
    assert EVIL_NAME in shown  # the name reads back exactly once unescaped by a browser
    assert EVIL_SOURCE in shown
    assert "RuntimeError: <b>boom</b> | in forward" in shown
    # Markdown: the table pipe in the error message does not split the cell
    assert "RuntimeError: &lt;b&gt;boom&lt;/b&gt; \\| in forward" in md


def test_default_out_dir_is_folder_safe(run_one, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sub = tmp_path / "small"
    write_run(sub, EVIL_NAME, synthetic_records(EVIL_NAME)[:6])
    r = render_report([sub])
    assert r.out_dir == Path("reports") / "quick-script-alert-name-script"
    assert (tmp_path / r.html_path).is_file()


def test_merged_runs(report_merged, report_one):
    r = report_merged
    md = r.markdown_path.read_text(encoding="utf-8")
    assert "### Run second" in md and "### Run quick&lt;script&gt;" in md
    df = results.load(r.csv_path)
    assert set(df["run_name"]) == {EVIL_NAME, "second"}
    assert len(df) == len(results.load(r.run_dirs[0])) + len(results.load(r.run_dirs[1]))
    # repeats from the second run merge into the first run's configurations
    g = r.analysis.groups
    one = report_one.analysis.groups
    assert len(g) == len(one)
    assert g["n_trials"].sum() > one["n_trials"].sum()
    parse_html(r.html_path.read_text(encoding="utf-8"))
    assert r.status_counts["ok"] > report_one.status_counts["ok"]


def test_csv_and_parquet_round_trip(report_one, run_one):
    df = results.load(run_one)
    for path in (report_one.csv_path, report_one.parquet_path):
        back = results.load(path)
        assert list(back.columns) == list(df.columns)
        pd.testing.assert_frame_equal(back, df, check_dtype=False)
    # a report folder loads through its own table
    back = results.load(report_one.out_dir)
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    # and the analysis comes out the same from the report's own CSV
    again = analyse(results.load(report_one.csv_path))
    assert again.recommendation.cheapest.config_key == report_one.recommendation.cheapest.config_key
    assert again.frontier_cost["config_key"].tolist() == report_one.frontier_cost["config_key"].tolist()


def test_results_columns(run_one):
    df = results.load(run_one)
    for col in ("trial_id", "status", "run_name", "val_accuracy", "best_val_accuracy", "seconds_per_epoch",
                "seconds_total", "cpu_peak_rss_mib", "gpu_peak_used_mib", "cuda_peak_allocated_mib",
                "energy_cpu_j", "energy_gpu_j", "cost_usd", "samples_per_s", "tokens_per_s", "mfu", "oom_phase",
                "oom_epoch", "error", "n_epochs_done", "repeat", "batch_size", "frozen_layers", "strategy",
                "dataset_size", "seed"):
        assert col in df.columns, col
    oom = df[df["status"] == "oom"].iloc[0]
    assert oom["oom_phase"] == "backward" and oom["oom_epoch"] == 1 and oom["n_epochs_done"] == 0
    assert math.isnan(oom["val_accuracy"])
    timeout = df[df["status"] == "timeout"].iloc[0]
    assert timeout["n_epochs_done"] == 2 and timeout["val_accuracy"] > 0
    ok = df[df["trial_id"] == "t000"].iloc[0]
    assert ok["seconds_per_epoch"] == pytest.approx((0.4 + 200 * 0.004) * 1.04)  # mean of 1.02, 1.04, 1.06 x 1.2 s
    assert ok["best_val_accuracy"] == pytest.approx(ok["val_accuracy"])
    assert set(df["frozen_layers"]) == {"0", "4", "all"}  # mixed int / "all" becomes text
    many = results.load_many([run_one, run_one])
    assert len(many) == 2 * len(df)


def test_partial_records(tmp_path):
    """Only trial_id, status and params: the report still renders."""
    run = write_run(tmp_path / "bare", "bare", [
        {"trial_id": "a", "status": "error", "params": {"batch_size": 8}},
        {"trial_id": "b", "status": "timeout", "params": {"batch_size": 16}, "epochs": None, "memory": None},
        {"trial_id": "c", "status": "ok", "params": {"batch_size": 32},
         "epochs": [{"epoch": 1, "seconds": 2.0, "val_accuracy": 0.5, "val_loss": None}], "seconds_total": 3.0},
    ])
    r = render_report([run], tmp_path / "out")
    assert "trials" in r.sections and "recommendation" in r.sections
    assert "frontier" in r.sections and "accuracy_vs_cost" not in r.figures  # no costs recorded
    assert r.recommendation.cheapest is None and r.recommendation.most_accurate.params["batch_size"] == 32
    parse_html(r.html_path.read_text(encoding="utf-8"))
    empty = write_run(tmp_path / "empty", "empty", [])
    r = render_report([empty], tmp_path / "out2")
    assert r.sections == ["recommendation", "setup", "trials"] or r.sections == ["setup", "trials"]
    parse_html(r.html_path.read_text(encoding="utf-8"))


def test_recommendation_planted(tmp_path):
    """Cheapest reaching the target is B (A is cheaper but misses it); fastest reaching is C; best is D."""
    def rec(tid, batch, acc, spe, cost_per_s, repeat=0):
        return record("planted", tid, size=400, batch=batch, acc=acc, spe=spe, cost_per_s=cost_per_s, repeat=repeat)

    recs = [
        rec("a", 8, 0.79, 0.5, 1.0 / 3600),  # cheapest overall, below 0.80
        rec("b", 16, 0.82, 1.0, 1.0 / 3600),  # cheapest at or above 0.80
        rec("b2", 16, 0.84, 1.1, 1.0 / 3600, repeat=1),
        rec("c", 32, 0.81, 0.6, 5.0 / 3600),  # fastest at or above 0.80 (but dearer per second)
        rec("d", 64, 0.93, 3.0, 2.0 / 3600),  # most accurate
        record("planted", "e", batch=128, status="oom", acc=0.99, spe=0.1, epochs_done=0,
               oom={"phase": "forward", "epoch": None}),
    ]
    run = write_run(tmp_path / "planted", "planted", recs, grid=grid_text("planted", target=0.8))
    r = render_report([run], tmp_path / "out")
    rec_ = r.recommendation
    assert r.target_accuracy == 0.8 and r.extrapolate_rows == 20000  # from the grid's [report] table
    assert rec_.cheapest.params["batch_size"] == 16 and rec_.cheapest.n_ok == 2
    assert rec_.cheapest.val_accuracy == pytest.approx(0.83)  # median of the two repeats
    assert rec_.fastest.params["batch_size"] == 32
    # 0.93 (batch 64) against 0.79 (batch 8) on 40 validation rows is within noise (95 %): no winner is named,
    # the cheapest of the tied is, and the others are listed as tied.
    assert rec_.most_accurate.params["batch_size"] == 8
    assert any("batch=64" in t for t in rec_.most_accurate.tied)
    assert list(r.frontier_cost["batch_size"]) == [8, 16, 64]
    rec2 = analyse(results.load(run), target_accuracy=0.9).recommendation
    assert rec2.cheapest.params["batch_size"] == 64
    rec3 = analyse(results.load(run), target_accuracy=0.99).recommendation
    assert rec3.cheapest is None and not rec3.reached
    assert rec3.fastest.params["batch_size"] == 8  # fastest overall when none reaches
    out = io.StringIO()
    from rich.console import Console

    print_summary(r, Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    assert "batch=16" in text and "Pareto frontier" in text and "Cheapest" in text


def test_print_summary_no_markup(report_one):
    from rich.console import Console

    out = io.StringIO()
    print_summary(report_one, Console(file=out, width=300, color_system=None))
    text = out.getvalue()
    assert "Cheapest reaching 80.0 %: rows=800, batch=32, frozen=0, strategy=fast" in text
    # 20-80 validation rows per trial: the most accurate configurations are within noise of each other
    assert "Most accurate: no winner, " in text and "within noise (95 %) of" in text


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium")
def test_screenshot(report_one, tmp_path):
    png = tmp_path / "report.png"
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}", "--window-size=1280,4000",
           report_one.html_path.resolve().as_uri()]
    subprocess.run(cmd, check=True, timeout=60, capture_output=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 50_000  # a rendered page, not a blank one
    shutil.copy(png, report_one.out_dir / "screenshot.png")
    # the sorting script runs under the page's Content-Security-Policy (it marks the headers focusable)
    dom = subprocess.run([c for c in cmd if not c.startswith("--screenshot")][:-1] + ["--dump-dom", cmd[-1]],
                         check=True, timeout=60, capture_output=True, text=True).stdout
    assert 'tabindex="0"' in dom


def test_extrapolation_counts_the_cache_that_grows_with_the_rows(tmp_path):
    """A fast trial's frozen-layer cache is built once, but over every row: at 20,000 rows it is a line of its own,
    not the constant start-up. Epochs: 1 s + 0.01 s/row; cache: 0.02 s/row; tokenising 0.1 s; loading 0.6 s."""
    from harness.report.analysis import size_fits

    recs = []
    for i, size in enumerate((200, 400, 800)):
        r = record("grow", f"g{i}", size=size, strategy="fast", spe=1.0 + 0.01 * size, epochs=3, index=i)
        r["phases"] = {"load_data": 0.1, "load_model": 0.5, "tokenize": 0.1, "cache": 0.02 * size}
        r["seconds_total"] = sum(e["seconds"] for e in r["epochs"]) + 0.7 + 0.02 * size
        recs.append(r)
    run = write_run(tmp_path / "grow", "grow", recs, grid=grid_text("grow", target=0.8))
    (fit,) = size_fits(results.load(run), 20_000)
    assert fit.once_s == pytest.approx(0.1 + 0.02 * 20_000, rel=1e-6)
    assert fit.overhead_s == pytest.approx(0.6, abs=1e-6)  # loading: the same at every size
    per_epoch = fit.predicted_s_per_epoch
    assert per_epoch == pytest.approx((1.0 + 0.01 * 20_000) * 1.04, rel=0.01)  # the helper's epochs run 2-6 % long
    assert fit.predicted_total_s == pytest.approx(3 * per_epoch + 0.6 + fit.once_s, rel=1e-6)
    text = fit.sentence()
    assert "once: tokenising, and the frozen-layer cache where there is one" in text and "R² 1.000 over 3 sizes" in text
    two = size_fits(results.load(write_run(tmp_path / "two", "two", recs[:2])), 20_000)[0]
    assert "fit unchecked" in two.sentence()  # two sizes: R² = 1 says nothing
