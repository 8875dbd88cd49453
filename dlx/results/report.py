"""`dlx report`: one self-contained HTML page about a run, to attach to a pull request or send to a colleague:
its final metrics, its curves, the confusion matrix and most confidently wrong test examples (classifiers), the
newest samples (GANs) or the test split's one-step forecasts against the series (forecasters), and its config. Images are inline (base64 PNG) and the style is in the page: it
opens anywhere, with no network and nothing else beside it.
"""

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlx import __version__
from dlx.errors import DlxError, check_writable, require
from dlx.results.plot import choose_metrics, curves_figure, find_curves
from dlx.results.runs import SWEEP_MANIFEST, format_duration, read_summary
from dlx.store.files import read_json, read_regular_file, write_text_atomically
from dlx.ui.figures import figure_png, new_figure

if TYPE_CHECKING:
    from dlx.inspect.evaluate import Evaluated
    from dlx.train.tasks import Forecasting

WORST = 16  # confidently wrong test examples shown

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.meta { color: #555; } code, pre { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.9em; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; border-radius: 4px; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 0.25em 0.8em; border-bottom: 1px solid #eee; }
th { text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; } .note { color: #8a6d3b; background: #fcf8e3; padding: 0.5em; }
.failed { color: #a94442; }
"""


def write_report(run_dir: Path, out: Path | None, allow: list[str], config_dirs: list[Path]) -> Path:
    out = out or run_dir / "report.html"
    check_writable(out)
    page = build_report(run_dir, allow, config_dirs)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(out, page)
    except OSError as err:
        raise DlxError(f"Cannot write {out}: {err.strerror or err}. Pass another --out.") from err
    return out


def build_report(run_dir: Path, allow: list[str], config_dirs: list[Path]) -> str:
    require("matplotlib", "plot", "dlx report")  # the page is mostly its figures
    if not run_dir.is_dir():
        raise DlxError(f"{run_dir} is not a folder (missing, a file, or a link that leads nowhere or to itself). Name "
                       "a run folder, e.g. outputs/latest; `dlx runs` lists them.")
    run_dir = run_dir.resolve()  # outputs/latest: the run's own name
    if (read_json(run_dir / SWEEP_MANIFEST) or {}).get("study"):
        return study_page(run_dir)
    summary = read_summary(run_dir)
    if summary is None or summary.get("kind") == "sweep":
        raise DlxError(f"{run_dir} is not a run folder (no summary.json of a run). Name one run, e.g. "
                       "outputs/latest, or the folder of a search (outputs/studies/NAME); `dlx runs` lists runs, "
                       "and `dlx plot SWEEP_FOLDER` compares a sweep's.")
    parts = [header(run_dir, summary), metrics_section(summary), curves_section(run_dir)]
    parts.append(evaluation_section(run_dir, summary, allow, config_dirs))
    parts.append(config_section(run_dir))
    parts.append(f'<p class="meta">Written by dlx {html.escape(__version__)}; torch '
                 f"{html.escape(str(summary.get('torch_version', '?')))}, Python "
                 f"{html.escape(str(summary.get('python_version', '?')))}.</p>")
    return page(f"dlx run {run_dir.name}", parts)


def page(title: str, parts: list[str]) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(p for p in parts if p) + "\n</body>\n</html>\n")


def study_page(sweep_dir: Path) -> str:
    """The page of a search's sweep folder: its study's best trial (or Pareto front) and the command that trains
    it again, the trials with their states, the parameters' importances, and the study's plots."""
    import shlex

    from dlx.results.study import importances, load_study, locate_study, study_figures, study_summary
    from dlx.store.study import describe

    location = locate_study(str(sweep_dir))
    study = load_study(location)
    summary = study_summary(study)
    labels = summary["objectives"]
    counts = ", ".join(f"{n} {state}" for state, n in summary["trials"].items())
    parts = [f"<h1>dlx study {html.escape(study.study_name)}</h1>",
             f'<p class="meta">{html.escape(str(sweep_dir))}<br>storage {html.escape(describe(location.url))}<br>'
             f"{sum(summary['trials'].values())} trials: {html.escape(counts)}; "
             + html.escape(", ".join(f"{d} {label}" for d, label in zip(summary["directions"], labels))) + "</p>"]
    best = [summary["best"]] if "best" in summary else summary.get("pareto_front", [])
    if best:
        parts.append("<h2>Best trial</h2>" if "best" in summary else "<h2>Pareto front</h2>")
        for record in best:
            values = ", ".join(f"{name} {format_value(value)}" for name, value in (record["values"] or {}).items())
            command = shlex.join(record["command"]) if record["command"] else str(record["params"])
            parts.append(f"<p>Trial {record['number']}: {html.escape(values)}<br><code>{html.escape(command)}</code></p>")
    params = sorted({name for trial in study.get_trials(deepcopy=False) for name in trial.params})
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["trial", "state", *labels, *params, "validations"])
    rows = []
    for trial in study.get_trials(deepcopy=False):
        numbers = list(trial.values) if trial.values else [None] * len(labels)
        cells = [str(trial.number), trial.state.name.lower(), *("" if v is None else format_value(v) for v in numbers),
                 *(str(trial.params.get(p, "")) for p in params), "" if trial.last_step is None else str(trial.last_step)]
        rows.append("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>")
    parts.append(f"<h2>Trials</h2>\n<table>\n<tr>{head}</tr>\n" + "\n".join(rows) + "\n</table>")
    for label, found in importances(study).items():
        shares = "\n".join(f'<tr><th>{html.escape(name)}</th><td class="num">{share:.3f}</td></tr>'
                           for name, share in found.items())
        parts.append(f"<h2>Parameter importances for {html.escape(label)} (fANOVA)</h2>\n<table>\n{shares}\n</table>")
    for name, figure in study_figures(study):
        parts.append(f"<h2>{html.escape(name.replace('_', ' ').capitalize())}</h2>\n{image(figure_png(figure), name)}")
    parts.append(f'<p class="meta">Written by dlx {html.escape(__version__)}.</p>')
    return page(f"dlx study {study.study_name}", parts)


def header(run_dir: Path, summary: dict[str, Any]) -> str:
    choices = summary.get("choices") or {}
    what = ", ".join(f"{group}={option}" for group, option in choices.items() if option)
    command = " ".join(["dlx", "train", *summary.get("overrides", [])])
    status = summary.get("status", "unknown")
    lines = [f"<h1>dlx run {html.escape(run_dir.name)}</h1>",
             f'<p class="meta">{html.escape(str(run_dir.resolve()))}<br>{html.escape(what)}</p>',
             f"<p><code>{html.escape(command)}</code></p>",
             f'<p>Status: <b class="{"failed" if status == "failed" else ""}">{html.escape(status)}</b></p>']
    if summary.get("error"):
        lines.append(f'<p class="note">{html.escape(summary["error"])}</p>')
    return "\n".join(lines)


def metrics_section(summary: dict[str, Any]) -> str:
    rows = [(f"test/{name} (best checkpoint)", value) for name, value in (summary.get("test") or {}).items()]
    best, monitor = summary.get("best") or {}, summary.get("monitor") or {}
    if best.get("value") is not None:
        rows.append((f"best {monitor.get('metric', 'validation metric')} (step {best.get('step')})", best["value"]))
    rows += [("steps", summary.get("steps")), ("epochs", summary.get("epochs")),
             ("parameters", summary.get("num_parameters")), ("training samples/s", summary.get("samples_per_sec")),
             ("wall time", format_duration(summary["wall_time_s"]) if summary.get("wall_time_s") else None),
             ("device", summary.get("device"))]
    cells = "\n".join(f"<tr><th>{html.escape(name)}</th><td class=\"num\">{html.escape(format_value(value))}</td></tr>"
                      for name, value in rows if value is not None)
    return f"<h2>Final metrics</h2>\n<table>\n{cells}\n</table>"


def format_value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e6:
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def image(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def curves_section(run_dir: Path) -> str:
    try:
        curves = find_curves([run_dir])
        panels = choose_metrics(curves, [])
    except DlxError as err:
        return f'<h2>Curves</h2>\n<p class="note">{html.escape(str(err))}</p>'
    if not panels:
        return '<h2>Curves</h2>\n<p class="note">The run logged no training or validation rows.</p>'
    png = figure_png(curves_figure(curves, panels, "dlx report"))
    return f"<h2>Curves</h2>\n{image(png, 'training and validation curves')}"


def run_file(run_dir: Path, name: str) -> bytes | str | None:
    """The bytes of a file the run wrote, or None when it is absent, or why it is not read (a link, not a
    regular file): only the run's own files go into a page that will be sent to others."""
    try:
        return read_regular_file(run_dir / name, run_dir)
    except FileNotFoundError:
        return None
    except DlxError as err:
        return str(err)
    except OSError as err:
        return f"{run_dir / name} cannot be read ({err.strerror or err})."


def config_section(run_dir: Path) -> str:
    config = run_file(run_dir, "config.yaml")
    if isinstance(config, str):
        return f'<h2>Config</h2>\n<p class="note">{html.escape(config)}</p>'
    if config is None:
        return ""
    return f"<h2>Config</h2>\n<pre>{html.escape(config.decode('utf-8', errors='replace'))}</pre>"


def evaluation_section(run_dir: Path, summary: dict[str, Any], allow: list[str], config_dirs: list[Path]) -> str:
    """Classifiers: the confusion matrix and per-class numbers of the best checkpoint on the test split. GANs:
    the newest grid of samples."""
    samples = sorted((run_dir / "samples").glob("step_*.png"))
    if samples:
        title = f"<h2>Samples ({html.escape(samples[-1].stem.replace('_', ' '))})</h2>"
        png = run_file(run_dir, f"samples/{samples[-1].name}")
        if isinstance(png, bytes):
            return f"{title}\n{image(png, 'generated samples')}"
        return title + f'\n<p class="note">{html.escape(str(png))}</p>'

    checkpoint = run_dir / (summary.get("checkpoint") or "checkpoints/best.ckpt")  # one of two names: read_summary
    if not checkpoint.is_file():
        return ""
    if checkpoint.is_symlink() or (run_dir / "checkpoints").is_symlink():
        return (f'<h2>Test split</h2>\n<p class="note">Not evaluated: {html.escape(str(checkpoint))} is a symbolic '
                "link, and the report reads only the run's own files.</p>")
    from dlx.inspect.class_metrics import class_figures, class_report
    from dlx.inspect.evaluate import evaluate_checkpoint
    from dlx.train.tasks import Classification, Forecasting

    try:
        _, info, evaluated = evaluate_checkpoint(checkpoint, [], "test", allow, config_dirs)
        if isinstance(evaluated.task, Forecasting):
            return forecast_section(evaluated, evaluated.task, info, checkpoint)
        if not isinstance(evaluated.task, Classification):
            return ""
        report = class_report(evaluated, WORST)
        figures = class_figures(report, evaluated)
    except DlxError as err:
        return f'<h2>Test split</h2>\n<p class="note">Not evaluated: {html.escape(str(err))}</p>'
    head = "".join(f'<th>{name}</th>' for name in ("class", "precision", "recall", "f1", "support"))
    rows = "\n".join(f"<tr><td>{html.escape(r['class'])}</td>" + "".join(
        f'<td class="num">{r[key]:.4f}</td>' for key in ("precision", "recall", "f1")) +
        f'<td class="num">{r["support"]}</td></tr>' for r in report.per_class)
    parts = [f"<h2>Test split: {info['samples']:,} samples, {html.escape(checkpoint.name)} (step {info['step']:,})</h2>",
             image(figure_png(figures["confusion_matrix"]), "confusion matrix"),
             f"<table>\n<tr>{head}</tr>\n{rows}\n</table>"]
    if "worst" in figures:
        parts += [f"<h3>The {len(report.worst)} most confidently wrong test examples</h3>",
                  image(figure_png(figures["worst"]), "most confidently wrong test examples")]
    return "\n".join(parts)


def forecast_section(evaluated: "Evaluated", task: "Forecasting", info: dict[str, Any], checkpoint: Path) -> str:
    """A forecaster: its one-step-ahead forecasts of the test split against the series, in the series' units."""
    import torch

    from dlx.data.timeseries import split_origins, target_statistics

    record = task.record
    x, y = next(iter(evaluated.split.batches([slice(0, evaluated.samples)])))
    with torch.inference_mode(), evaluated.mixed_precision:
        forecast = evaluated.model(x).float().cpu().numpy()
    mean, std = target_statistics(record)
    targets = len(mean)
    rows = split_origins(tuple(record["splits"]["test"]), record["window"], record["horizon"], record["stride"])
    figure = new_figure("dlx report", figsize=(9, 2.6 * targets), layout="constrained")
    for j, (name, ax) in enumerate(zip(record["targets"], figure.subplots(targets, 1, squeeze=False)[:, 0])):
        ax.plot(rows[:len(y)], y[:, j].float().cpu().numpy() * std[j] + mean[j], color="C0", label="series")
        ax.plot(rows[:len(y)], forecast[:, j] * std[j] + mean[j], color="C1", linestyle="--",
                label="forecast, 1 step ahead")
        ax.set_title(name)
        ax.set_xlabel("row of the series")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    naive = record.get("seasonal_naive_mase", {}).get("test")
    note = (f"<p>The seasonal naive forecast (season {record['season']}) scores MASE {naive:.4f} on these windows."
            "</p>" if naive is not None else "")
    return (f"<h2>Forecasts of the test split: {info['samples']:,} windows, {html.escape(checkpoint.name)} "
            f"(step {info['step']:,})</h2>\n{image(figure_png(figure), 'test forecasts against the series')}\n"
            f"{note}")
