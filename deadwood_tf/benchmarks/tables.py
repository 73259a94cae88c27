"""The docs' benchmark tables, generated from the row files (and nothing else).

`render(results_dir, protocol)` reads `<results_dir>/<protocol>/*.json` (and
`worst/*.json`) and returns Markdown: per sparsity, mean +- std over seeds of
every method; the paired difference of Deadwood to each peer and ablation with
a 95% t-interval over seeds; the targets; the worst-case attacks.
`update_docs(paths, ...)` writes it between the markers
`<!-- benchmark-tables:<protocol> begin -->` and `... end -->` of whichever
Markdown file holds them (and, where their markers are, the validation sweep,
`benchmark-validation:<protocol>`, and the README's headline,
`benchmark-headline:<protocol>`); `check_docs` reports whether the files
already hold exactly that.

Wording: a difference is "better" or "worse" only where its paired t-test,
after Holm's correction over every comparison of its table (each method and
figure), rejects "no difference" at 5%; otherwise it is a "tie" (and with one
seed, "n/a": no test). The 95% t-intervals shown are per comparison,
uncorrected.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re

import numpy as np

# The targets set for the unstructured benchmark (test, mean over seeds): clean, PGD-20 (%).
_MNIST_TARGETS = {0.9: (98.0, 85.0), 0.95: (97.5, 83.0), 0.99: (95.5, 72.0)}
TARGETS = {"mnist_cnn": _MNIST_TARGETS, "mnist_cnn_lr1e-3": _MNIST_TARGETS}
HEADLINE = "deadwood"


def load_rows(folder):
    rows = []
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        with open(path) as f:
            rows.append(json.load(f))
    return rows


def _groups(rows):
    out = {}
    for r in rows:
        key = (r["method"] + (f"-{r['variant']}" if r.get("variant") else ""),
               float(r["target_sparsity"]))
        out.setdefault(key, {})[int(r["seed"])] = r
    return out


def interval(diffs):
    """`(mean, half_width)` of the 95% t-interval of the mean; half_width None if n < 2."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    if len(d) < 2:
        return float(d.mean()), None
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean()), float(half)


def p_value(diffs):
    """Two-sided p of the paired t-test that the mean of `diffs` is 0; None if n < 2."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    if len(d) < 2:
        return None
    if np.all(d == d[0]):  # no spread: certain, unless every difference is 0
        return 1.0 if d[0] == 0 else 0.0
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def holm(p_values):
    """Holm's step-down adjusted p-values, in the input order (None stays None)."""
    known = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    out, running = [None] * len(p_values), 0.0
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (len(known) - rank) * p))
        out[i] = running
    return out


def verdict(mean, adjusted_p, alpha=0.05):
    """"better" / "worse" where the Holm-adjusted p is below `alpha`, else "tie"."""
    if adjusted_p is None:
        return "n/a (1 seed)"
    if adjusted_p < alpha:
        return "better" if mean > 0 else "worse"
    return "tie"


def _ms(values):
    v = 100 * np.asarray(values, dtype=float)
    return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v.mean():.2f}"


def _main_table(groups, sparsity, order):
    lines = [f"**Sparsity {sparsity:g}** (test split; mean ± std over seeds; %)", "",
             "| method | seeds | clean | FGSM | PGD-20 | measured sparsity | train s |",
             "|---|---|---|---|---|---|---|"]
    keys = sorted([k for k in groups if k[1] in (sparsity, 0.0)],
                  key=lambda k: (order.get(k[0].split("-")[0], 99), k[0]))
    for key in keys:
        runs = [groups[key][s] for s in sorted(groups[key])]
        fgsm = [r["fgsm"] for r in runs if r.get("fgsm") is not None]
        lines.append(
            f"| {key[0]} | {','.join(str(r['seed']) for r in runs)} | "
            f"{_ms([r['clean'] for r in runs])} | {_ms(fgsm) if fgsm else ''} | "
            f"{_ms([r['pgd'] for r in runs])} | "
            f"{np.mean([r['sparsity'] for r in runs]):.4f} | "
            f"{np.mean([r['train_seconds'] for r in runs]):.0f} |")
    return lines


def _paired_stats(groups, sparsity, headline, min_seeds=1):
    """`(rows, best_peer)`: per method, `(name, group, seeds, [(mean, half, adjusted p)] for
    clean and PGD-20)`, Holm-adjusted over the table's comparisons; best_peer: the peer with
    the highest mean PGD-20 sharing at least min(3, its seeds) seeds with `headline`."""
    base = groups.get((headline, sparsity))
    if not base:
        return [], None
    rows, best_peer, best_pgd = [], None, -1.0
    for key in sorted(groups):
        if key[1] != sparsity or key[0] == headline:
            continue
        other = groups[key]
        seeds = sorted(set(base) & set(other))
        if len(seeds) < max(1, min_seeds):
            continue
        group = other[seeds[0]].get("group")
        pgd_mean = float(np.mean([other[s]["pgd"] for s in other]))
        if group == "peer" and pgd_mean > best_pgd and len(seeds) >= min(3, len(base)):
            best_peer, best_pgd = key[0], pgd_mean
        diffs = [[100 * (base[s][fig] - other[s][fig]) for s in seeds] for fig in ("clean", "pgd")]
        rows.append((key[0], group, seeds, diffs))
    adjusted = iter(holm([p_value(d) for *_, diffs in rows for d in diffs]))
    return [(name, group, seeds, [interval(d) + (next(adjusted),) for d in diffs])
            for name, group, seeds, diffs in rows], best_peer


def _difference(mean, half, p):
    """`(figure, verdict)` cells of one paired difference."""
    return (f"{mean:+.2f}" + (f" [{mean - half:+.2f}, {mean + half:+.2f}]" if half is not None
                              else ""),
            verdict(mean, p) + (f" (p {p:.3f})" if p is not None else ""))


def _paired(groups, sparsity, headline, min_seeds=1):
    rows, best_peer = _paired_stats(groups, sparsity, headline, min_seeds)
    if not rows:  # nothing to compare with: no table
        return [], None
    lines = [f"Paired differences, {headline} minus each method at sparsity {sparsity:g} "
             "(same seeds; mean, 95% t-interval over seeds; percentage points; verdicts after "
             f"Holm's correction over the table's {2 * len(rows)} comparisons, with its "
             "adjusted p):", "",
             "| minus | seeds | Δ clean | Δ PGD-20 | clean | PGD-20 |", "|---|---|---|---|---|---|"]
    for name, group, seeds, stats in rows:
        (text_c, word_c), (text_p, word_p) = (_difference(*st) for st in stats)
        lines.append(f"| {name} ({group}) | {len(seeds)} | {text_c} | {text_p} | "
                     f"{word_c} | {word_p} |")
    return lines, best_peer


def _targets(groups, protocol, headline):
    targets = TARGETS.get(protocol)
    if not targets:
        return []
    lines = ["Targets set for the unstructured benchmark (test, mean over seeds; %):", "",
             "| sparsity | target clean / PGD-20 | Deadwood clean / PGD-20 | seeds | met |",
             "|---|---|---|---|---|"]
    for s, (tc, tp) in sorted(targets.items()):
        runs = groups.get((headline, s))
        if not runs:
            lines.append(f"| {s:g} | ≥ {tc} / ≥ {tp} | not run | 0 | – |")
            continue
        c = 100 * np.mean([r["clean"] for r in runs.values()])
        p = 100 * np.mean([r["pgd"] for r in runs.values()])
        met = ("both" if c >= tc and p >= tp else "clean only" if c >= tc
               else "PGD only" if p >= tp else "neither")
        lines.append(f"| {s:g} | ≥ {tc} / ≥ {tp} | {c:.2f} / {p:.2f} | {len(runs)} | {met} |")
    return lines


def _structured(rows, groups):
    """Channel pruning rows (the structured work): the target is the fraction of MACs removed."""
    channel = _groups([r for r in rows if r.get("group") == "structured"])
    if not channel:
        return []
    lines = ["Channel pruning (target = fraction of MACs removed; the models are shrunk; "
             "test split; mean ± std over seeds; %). Unstructured Deadwood at the same "
             "fraction of weights, for comparison, keeps every MAC.", "",
             "| method | MACs removed (target) | seeds | MACs | params | clean | PGD-20 |",
             "|---|---|---|---|---|---|---|"]
    dense = groups.get(("dense_at", 0.0), {})
    for s in sorted({k[1] for k in channel}):
        keys = sorted([k for k in channel if k[1] == s]) + \
            sorted(k for k in groups if k[0] == HEADLINE and k[1] == s)
        for key in ([("dense_at", 0.0)] if dense and s == min(k[1] for k in channel) else []) \
                + keys:
            runs = [(channel.get(key) or groups[key])[x]
                    for x in sorted(channel.get(key) or groups[key])]
            macs = [r["macs"] for r in runs if r.get("macs")]
            cut = [1 - r["macs"] / r["dense_macs"] for r in runs
                   if r.get("macs") and r.get("dense_macs")]
            lines.append(
                f"| {key[0]} | {np.mean(cut) if cut else 0:.3f} ({key[1]:g}) | "
                f"{','.join(str(r['seed']) for r in runs)} | "
                f"{np.mean(macs) / 1e6 if macs else float('nan'):.2f}M | "
                f"{np.mean([r['params'] for r in runs if r.get('params')] or [0]):,.0f} | "
                f"{_ms([r['clean'] for r in runs])} | {_ms([r['pgd'] for r in runs])} |")
    for s in sorted({k[1] for k in channel}):
        for base in ("deadwood_channel", "deadwood_channel_r8"):
            # Only the methods sharing at least 2 seeds with `base`: an interval.
            paired, _ = _paired(channel, s, base, min_seeds=2)
            if len(paired) > 4:
                lines += [""] + paired
    return lines


def _timing_file(folder, name):
    """`(result, caption head)` of a timing file under `<folder>/latency/`: the command,
    date, CPU and note; `(None, "")` when there is none."""
    path = os.path.join(folder, "latency", name)
    if not os.path.exists(path):
        return None, ""
    with open(path) as f:
        result = json.load(f)
    m = result["machine"]
    return result, (f"`{result['command']}`; {result['date'][:10]}; "
                    f"{m.get('cpu') or m.get('processor')}, {m['cpu_count']} CPUs"
                    f"{'; ' + m['note'] if m.get('note') else ''}")


def _latency(folder):
    """The latency table of `benchmarks/experiments/benchmark_latency.py` (seed 0), speed-ups against dense_at."""
    result, head = _timing_file(folder, "seed0.json")
    if result is None:
        return []
    models = sorted(result["models"].values(),
                    key=lambda e: (e["target"], e["method"] != "dense_at", e["method"]))
    dense = next((e for e in models if e["method"] == "dense_at"), None)
    threads = sorted({k.rsplit("_", 1)[1] for e in models for k in e if k.startswith("us_")})
    lines = [f"LiteRT latency, seed 0 ({head}). µs per single-example invoke, "
             "median over rounds, all files interleaved; ×: dense_at's time / this file's. "
             "`deadwood` is unstructured (sparse storage).", "",
             "| model | target | MACs | params | fp32 / int8 bytes | " +
             " | ".join(f"{k} {t.upper()}" for k in ("fp32", "int8") for t in threads) +
             " | clean | PGD-20 |", "|---" * (7 + 2 * len(threads)) + "|"]
    for e in models:
        cells = []
        for k in ("fp32", "int8"):
            for t in threads:
                us = e[f"us_{k}_{t}"]
                ratio = dense[f"us_{k}_{t}"] / us if dense else float("nan")
                cells.append(f"{us:.0f} ({ratio:.2f}×)")
        macs = f"{e['macs'] / 1e6:.1f}M" if e.get("macs") else ""
        lines.append(f"| {e['method']} | {e['target']:g} | {macs} | {e.get('params') or 0:,} | "
                     f"{e['bytes_fp32']:,} / {e['bytes_int8']:,} | " + " | ".join(cells) +
                     f" | {100 * e['clean']:.1f} | {100 * e['pgd']:.1f} |")
    return lines


def _widths(folder):
    """The table of `benchmarks/experiments/benchmark_widths.py`: what channel widths cost on LiteRT."""
    result, head = _timing_file(folder, "widths.json")
    if result is None:
        return []
    shapes = result["shapes"]
    dense = shapes["dense"]
    lines = [f"What widths cost ({head}): the ResNet-20 built at other "
             "widths with random weights, LiteRT 1 thread, µs per single-example invoke "
             "(×: the dense shape's time / this one's). Stream: the residual stream's "
             "channels per stage; inner: each block's first convolution.", "",
             "| shape | what | stream | inner | MACs removed | fp32 1T | int8 1T |",
             "|---|---|---|---|---|---|---|"]
    for name, e in sorted(shapes.items(), key=lambda kv: (kv[0] != "dense",
                                                          kv[1]["macs_removed"])):
        cells = [f"{e[f'us_{k}_1t']:.0f} ({dense[f'us_{k}_1t'] / e[f'us_{k}_1t']:.2f}×)"
                 for k in ("fp32", "int8")]
        removed = e["macs_removed"] if abs(e["macs_removed"]) >= 5e-3 else 0.0  # no "-0.00"
        lines.append(f"| {name} | {e['what']} | {'/'.join(map(str, e['stream']))} | "
                     f"{','.join(map(str, e['inner']))} | {removed:.2f} | "
                     + " | ".join(cells) + " |")
    return lines


def _worst(folder):
    rows = load_rows(os.path.join(folder, "worst"))
    if not rows:
        return []
    lines = ["Worst case per example (seed 0, the first "
             f"{rows[0]['num_examples']} test digits; %). Masking is flagged where Square "
             "beats PGD-20 with restarts by more than 1 point; Square-only: the digits "
             "Square broke that every gradient attack missed.", "",
             "| method | sparsity | clean | PGD-20 ×restarts | APGD-CE | APGD-DLR | Square | "
             "worst | Square-only | masking |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["target_sparsity"], r["method"])):
        a = r["accuracy"]
        restarts = sum(bool(re.fullmatch(r"pgd\d+_restart\d+", k)) for k in a)
        lines.append(
            f"| {r['method']} | {r['target_sparsity']:g} | {100 * a['clean']:.1f} | "
            f"{100 * a['pgd_restarts']:.1f} (×{restarts}) | {100 * a['apgd_ce']:.1f} | "
            f"{100 * a['apgd_dlr']:.1f} | {100 * a['square']:.1f} | {100 * a['worst']:.1f} | "
            f"{r['square_only']} | {'**yes**' if r['masking'] else 'no'} |")
    return lines


def render(results_dir, protocol, headline=HEADLINE) -> str:
    """Markdown for one protocol's rows (test split)."""
    from deadwood_tf.benchmarks.runner import METHODS

    folder = os.path.join(results_dir, protocol)
    rows = load_rows(folder)
    groups = _groups([r for r in rows if r.get("group") != "structured"])
    order = {m: i for i, m in enumerate(METHODS)}
    out = [f"_Generated by `python tools/benchmark_tables.py` from "
           f"`{os.path.join(results_dir, protocol)}/`; do not edit by hand._", ""]
    for s in sorted({k[1] for k in groups if k[1] > 0}):
        out += _main_table(groups, s, order) + [""]
        paired, best = _paired(groups, s, headline)
        if paired:
            out += paired + [""]
            if best:
                out += [f"Best peer at {s:g} (highest mean PGD-20, sharing at least min(3, its seeds) seeds "
                        f"with {headline}): `{best}`.", ""]
    targets = _targets(groups, protocol, headline)
    if targets:
        out += targets + [""]
    structured = _structured(rows, groups)
    if structured:
        out += structured + [""]
    latency = _latency(folder)
    if latency:
        out += latency + [""]
    widths = _widths(folder)
    if widths:
        out += widths + [""]
    worst = _worst(folder)
    if worst:
        out += worst + [""]
    return "\n".join(out).rstrip() + "\n"


def render_validation(results_dir, protocol) -> str:
    """Markdown of one protocol's validation sweep (`<protocol>/validation/*.json`)."""
    validation = _groups(load_rows(os.path.join(results_dir, protocol, "validation")))
    if not validation:
        return ""
    out = ["Validation sweep (validation split: 1,000 held-out training examples; mean "
           "over the seeds run; %). Variants are named by their change from the "
           "settings of their round (`benchmarks/plans/benchmark_validation.sh`): rows without "
           "an lr suffix ran at that round's lr 1e-3. Each method's variants "
           "together, best PGD-20 first.", "",
           "| variant | sparsity | seeds | clean | PGD-20 |", "|---|---|---|---|---|"]
    pgd = {k: np.mean([r["pgd"] for r in v.values()]) for k, v in validation.items()}
    best = {}
    for (name, s), v in pgd.items():
        base = (name.split("-")[0], s)
        best[base] = max(best.get(base, -1.0), v)
    for key in sorted(validation, key=lambda k: (
            k[1], -best[(k[0].split("-")[0], k[1])], k[0].split("-")[0], -pgd[k])):
        runs = [validation[key][x] for x in sorted(validation[key])]
        out.append(f"| {key[0]} | {key[1]:g} | {','.join(str(r['seed']) for r in runs)} | "
                   f"{100 * np.mean([r['clean'] for r in runs]):.2f} | "
                   f"{100 * pgd[key]:.2f} |")
    out.append("")
    return "\n".join(out).rstrip() + "\n"


def _search_rows(results_dir, protocol):
    """`{(search, method, sparsity): {candidate: (row, worst or None, search info)}}`
    of the validation rows a search wrote (rows recording `search`)."""
    folder = os.path.join(results_dir, protocol, "validation")
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        with open(path) as f:
            row = json.load(f)
        info = row.get("search")
        if not info:
            continue
        worst_path = os.path.join(folder, "worst", os.path.basename(path))
        worst = None
        if os.path.exists(worst_path):
            with open(worst_path) as f:
                worst = json.load(f)
        key = (info["name"], row["method"], row["target_sparsity"])
        out.setdefault(key, {})[info["candidate"]] = (row, worst, info)
    return out


def _settings(overrides):
    return ", ".join(f"{k.split('.')[-1]}={v:g}" if isinstance(v, (int, float))
                     and not isinstance(v, bool) else f"{k.split('.')[-1]}={v}"
                     for k, v in sorted(overrides.items()))


def render_search(results_dir, protocol) -> str:
    """Markdown of a search's validation stage as it stands: every candidate run so
    far with its validation clean, PGD-20 and worst case (the selection figure),
    and per contender and sparsity the candidate the rule would pick among those
    run so far (final only when all of the contender's candidates are in)."""
    groups = _search_rows(results_dir, protocol)
    if not groups:
        return ""
    out = ["Validation stage of the search (seed 0, the validation split; %). "
           "\"worst\" is the selection figure: per example, the worst of PGD-20 with "
           "restarts, APGD-CE and APGD-T (no Square). \"leads\" marks the candidate the "
           "search's rule picks among the candidates run so far.", "",
           "| search | contender | sparsity | candidate | settings | commit | sparsity reached "
           "| clean | PGD-20 | worst | leads |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (name, method, sparsity), cands in sorted(groups.items()):
        leader = _leader(cands, sparsity)
        for i, (row, worst, info) in sorted(cands.items()):
            w = f"{100 * worst['accuracy']['worst']:.1f}" if worst else "pending"
            out.append(f"| {name} | {method} | {sparsity:g} | c{i} | {_settings(info['overrides'])} "
                       f"| {info['commit'][:7]} | {row['sparsity']:.4f} | {100 * row['clean']:.1f} "
                       f"| {100 * row['pgd']:.1f} | {w} | {'**yes**' if i == leader else ''} |")
    out.append("")
    return "\n".join(out)


def _leader(cands, sparsity):
    """The search rule (`search.pick`, with the search file's sparsity miss and
    tie) over the candidates that have a worst case."""
    from deadwood_tf.benchmarks import search as search_lib

    info = next(iter(cands.values()))[2]
    spec = search_lib.load(info["file"])
    return search_lib.pick([
        {"candidate": i, "clean": row["clean"], "worst": worst["accuracy"]["worst"],
         "valid": abs(row["sparsity"] - sparsity) <= spec["max_sparsity_miss"]}
        for i, (row, worst, _) in cands.items() if worst], spec["tie"])

def plot(results_dir, protocol, path, headline=HEADLINE):
    """Mean PGD-20 and clean accuracy against sparsity, std over seeds as error bars.
    Writes nothing (and returns False) for a protocol without test rows."""
    groups = _groups([r for r in load_rows(os.path.join(results_dir, protocol))
                      if r.get("group") != "structured"])
    if not any(k[1] > 0 for k in groups):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, fig_key, title in ((axes[0], "pgd", "PGD-20 accuracy"),
                               (axes[1], "clean", "clean accuracy")):
        for method in sorted({k[0] for k in groups if k[1] > 0}):
            pts = sorted((k[1], [100 * r[fig_key] for r in groups[k].values()])
                         for k in groups if k[0] == method)
            ax.errorbar([p[0] for p in pts], [np.mean(p[1]) for p in pts],
                        yerr=[np.std(p[1]) for p in pts], marker="o", capsize=3, label=method,
                        lw=2.5 if method == headline else 1.0)
        ref = groups.get(("dense_at", 0.0))
        if ref:
            ax.axhline(np.mean([100 * r[fig_key] for r in ref.values()]), color="k", ls="--",
                       lw=1, label="dense_at")
        ax.set_xlabel("sparsity")
        ax.set_ylabel(f"{title} (%)")
        ax.set_title(f"{protocol}: {title}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# The files that hold generated blocks (paths from the repository root).
DOCS = ("docs/benchmarks.md", "benchmarks/HISTORY.md", "README.md")


def _markers(protocol, kind="tables"):
    return (f"<!-- benchmark-{kind}:{protocol} begin -->",
            f"<!-- benchmark-{kind}:{protocol} end -->")


def _replace(text, protocol, body, kind="tables"):
    begin, end = _markers(protocol, kind)
    if begin not in text or end not in text:
        raise ValueError(f"Invalid docs file: the markers {begin!r} and {end!r} are missing.")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}{end}{tail}"


def _updated(texts, results_dir, protocol):
    """`{path: text}` with every block of `protocol` regenerated where its markers are: the
    tables (required in one of the files), the validation sweep and the headline."""
    if not any(_markers(protocol)[0] in text for text in texts.values()):
        raise ValueError(f"Invalid docs files {sorted(texts)}: none holds the markers "
                         f"{_markers(protocol)[0]!r} and {_markers(protocol)[1]!r}.")
    blocks = (("tables", render), ("validation", render_validation),
              ("search", render_search), ("headline", render_headline))
    out = {}
    for path, text in texts.items():
        for kind, make in blocks:
            if _markers(protocol, kind)[0] in text:
                text = _replace(text, protocol, make(results_dir, protocol), kind)
        out[path] = text
    return out


def _read(paths):
    paths = [paths] if isinstance(paths, str) else list(paths)
    texts = {}
    for path in paths:
        with open(path) as f:
            texts[path] = f.read()
    return texts


def update_docs(paths, results_dir, protocols):
    """Rewrites the generated blocks of `protocols` in `paths` (one Markdown file or several)."""
    texts = _read(paths)
    for p in protocols:
        texts = _updated(texts, results_dir, p)
    for path, text in texts.items():
        with open(path, "w") as f:
            f.write(text)


def check_docs(paths, results_dir, protocols) -> list:
    """Protocols whose blocks in `paths` differ from what the rows give (empty: all agree)."""
    texts = _read(paths)
    return [p for p in protocols if _updated(texts, results_dir, p) != texts]


def plot_latency(results_dir, protocol, path) -> bool:
    """Clean and PGD-20 accuracy against LiteRT latency (1 thread; fp32 and int8) of
    the latency file's models (`benchmarks/experiments/benchmark_latency.py`). False when there is none."""
    src = os.path.join(results_dir, protocol, "latency", "seed0.json")
    if not os.path.exists(src):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(src) as f:
        models = sorted(json.load(f)["models"].values(),
                        key=lambda e: (e["method"], e["target"]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, kind in zip(axes, ("fp32", "int8")):
        for key, marker, label in (("clean", "o", "clean"), ("pgd", "^", "PGD-20")):
            for i, e in enumerate(models):
                ax.scatter(e[f"us_{kind}_1t"], 100 * e[key], marker=marker,
                           color=f"C{i % 10}", s=45,
                           label=f"{e['method']} {e['target']:g}" if key == "clean" else None)
        for e in models:
            ax.annotate(f"{e['method']} {e['target']:g}", (e[f"us_{kind}_1t"], 100 * e["pgd"]),
                        textcoords="offset points", xytext=(4, -10), fontsize=6)
        ax.set_xlabel(f"LiteRT latency, {kind}, 1 thread (µs per example)")
        ax.set_ylabel("test accuracy (%): circles clean, triangles PGD-20")
        ax.set_title(f"{protocol}: accuracy against latency ({kind})")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


CONTROL = "gradual_magnitude_at"


def render_headline(results_dir, protocol, headline=HEADLINE, control=CONTROL) -> str:
    """The README's headline table: per sparsity, the mean clean / PGD-20 over seeds of
    `headline`, the gradual `control` and the best other peer (highest mean PGD-20), and
    `headline` minus `control` with the verdicts of the paired table (Holm-corrected)."""
    groups = _groups([r for r in load_rows(os.path.join(results_dir, protocol))
                      if r.get("group") != "structured"])

    def cell(name, s):
        runs = groups[(name, s)].values()
        return (f"{100 * np.mean([r['clean'] for r in runs]):.2f} / "
                f"{100 * np.mean([r['pgd'] for r in runs]):.2f}")

    lines = [f"_Generated by `python tools/benchmark_tables.py` from "
             f"`{os.path.join(results_dir, protocol)}/` (test split; mean over seeds; clean / "
             "PGD-20, %; differences: mean [95% t-interval], verdict after Holm's correction "
             "over the paired table of its sparsity); do not edit by hand._", "",
             f"| sparsity | seeds | {headline} | {control} (control) | best other peer | "
             f"{headline} − control, PGD-20 | {headline} − control, clean |",
             "|---|---|---|---|---|---|---|"]
    for s in sorted(k[1] for k in groups if k[0] == headline and k[1] > 0):
        rows, _ = _paired_stats(groups, s, headline)
        stats = {name: st for name, _, _, st in rows}
        n = len(groups[(headline, s)])
        peers = [(float(np.mean([r["pgd"] for r in groups[(name, s)].values()])), name)
                 for name, group, seeds, _ in rows
                 if group == "peer" and name != control and len(seeds) >= min(3, n)]
        best = max(peers)[1] if peers else None
        diffs = ([", ".join(_difference(*stats[control][i])) for i in (1, 0)]  # PGD-20, clean
                 if control in stats else ["–", "–"])
        lines.append(f"| {s:g} | {n} | {cell(headline, s)} | "
                     f"{cell(control, s) if control in stats else '–'} | "
                     f"{f'{best}: {cell(best, s)}' if best else '–'} | {diffs[0]} | {diffs[1]} |")
    return "\n".join(lines) + "\n"
