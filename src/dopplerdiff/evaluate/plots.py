"""Matplotlib (Agg) figures for the evaluation report, returned as PNG bytes.

Every function here is pure: numbers in, PNG bytes out. Nothing is written to disk, so the report can
embed the figures as base64 and stay a single self-contained HTML file.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def fig_to_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render and close a figure (closing avoids leaking figures across many report builds)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _row_normalise(cm: np.ndarray) -> np.ndarray:
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)


def confusion_plot(
    matrices: dict[str, np.ndarray | list], identities: Sequence[str], title: str = "Confusion matrices"
) -> bytes:
    """Side-by-side row-normalised confusion matrices (rows: true identity, columns: predicted)."""
    names = list(matrices)
    k = len(identities)
    size = min(4.0 + 0.25 * k, 9.0)
    fig, axes = plt.subplots(1, len(names), figsize=(size * len(names), size), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        cm = _row_normalise(np.asarray(matrices[name]))
        im = ax.imshow(cm, vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_title(name)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ticks = np.arange(k)
        show = k <= 40  # tick labels become unreadable beyond that
        ax.set_xticks(ticks if show else [])
        ax.set_yticks(ticks if show else [])
        if show:
            ax.set_xticklabels(identities, rotation=90, fontsize=7)
            ax.set_yticklabels(identities, fontsize=7)
        if k <= 12:  # annotate small matrices with the fractions
            for i in range(k):
                for j in range(k):
                    if cm[i, j] > 0:
                        ax.text(
                            j,
                            i,
                            f"{cm[i, j]:.2f}",
                            ha="center",
                            va="center",
                            fontsize=7,
                            color="white" if cm[i, j] < 0.6 else "black",
                        )
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title)
    return fig_to_png(fig)


def guidance_sweep_plot(sweep: Sequence[dict], real_accuracy: float | None = None) -> bytes:
    """Identity accuracy and Fréchet distance of generated samples against the guidance scale."""
    g = [row["guidance"] for row in sweep]
    acc = [row.get("accuracy", np.nan) for row in sweep]
    fd = [row.get("fd", np.nan) for row in sweep]
    fig, ax1 = plt.subplots(figsize=(6, 4))
    ax1.plot(g, acc, "o-", color="tab:blue", label="identity accuracy (generated)")
    if real_accuracy is not None:
        ax1.axhline(real_accuracy, color="tab:blue", ls="--", lw=1, label="real-test accuracy")
    ax1.set_xlabel("guidance scale")
    ax1.set_ylabel("identity accuracy", color="tab:blue")
    ax1.set_ylim(0, 1.02)
    ax2 = ax1.twinx()
    ax2.plot(g, [np.nan if v is None else v for v in fd], "s-", color="tab:red", label="Fréchet distance")
    ax2.set_ylabel("Fréchet distance (encoder space)", color="tab:red")
    lines = ax1.get_lines() + ax2.get_lines()
    ax1.legend(lines, [ln.get_label() for ln in lines], loc="best", fontsize=8)
    ax1.set_title("Guidance sweep")
    return fig_to_png(fig)


def synthetic_gain_plot(arms: dict[str, dict]) -> bytes:
    """Bar chart of real-test accuracy per training arm (mean ± std over seeds, seeds as dots)."""
    names = list(arms)
    means = [arms[n]["mean"] for n in names]
    stds = [arms[n]["std"] for n in names]
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(names), 4))
    x = np.arange(len(names))
    ax.bar(
        x,
        means,
        yerr=stds,
        capsize=6,
        color=["tab:gray", "tab:green", "tab:orange", "tab:purple"][: len(names)],
    )
    for i, n in enumerate(names):
        runs = arms[n].get("runs", [])
        ax.plot(np.full(len(runs), x[i]), runs, "k.", ms=5)
    ax.set_xticks(x)
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy on real test")
    ax.set_title("Augmentation experiment")
    return fig_to_png(fig)


def physics_plot(real: dict[str, np.ndarray], generated: dict[str, np.ndarray]) -> bytes:
    """Histograms of per-image physical statistics, real test vs generated, one panel per statistic."""
    stats = [s for s in real if s in generated]
    if not stats:
        stats = list(real) or list(generated)
    n = max(len(stats), 1)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, stat in zip(axes.ravel(), stats, strict=False):
        r = np.asarray(real.get(stat, []), dtype=np.float64).ravel()
        g = np.asarray(generated.get(stat, []), dtype=np.float64).ravel()
        r, g = r[np.isfinite(r)], g[np.isfinite(g)]
        both = np.concatenate([r, g])
        bins = np.histogram_bin_edges(both, bins=20) if both.size and np.ptp(both) > 0 else 10
        if r.size:
            ax.hist(r, bins=bins, alpha=0.55, density=True, label="real test")
        if g.size:
            ax.hist(g, bins=bins, alpha=0.55, density=True, label="generated")
        ax.set_title(stat, fontsize=9)
        ax.tick_params(labelsize=7)
    axes.ravel()[0].legend(fontsize=7)
    fig.suptitle("Physical statistics")
    fig.tight_layout()
    return fig_to_png(fig)


def distance_hist_plot(gen_to_train: np.ndarray, test_to_train: np.ndarray, threshold: float | None) -> bytes:
    """Nearest-neighbour distance to the training set: generated samples vs real test windows."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    both = np.concatenate([np.ravel(gen_to_train), np.ravel(test_to_train)]).astype(np.float64)
    bins = np.histogram_bin_edges(both, bins=30) if both.size and np.ptp(both) > 0 else 10
    ax.hist(np.ravel(test_to_train), bins=bins, alpha=0.55, density=True, label="test → train")
    ax.hist(np.ravel(gen_to_train), bins=bins, alpha=0.55, density=True, label="generated → train")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label="memorisation threshold")
    ax.set_xlabel("nearest-neighbour distance to a training window")
    ax.legend(fontsize=8)
    ax.set_title("Memorisation check")
    return fig_to_png(fig)


def texture_plot(spectra: dict[str, tuple[np.ndarray, np.ndarray]], pixels: dict[str, np.ndarray]) -> bytes:
    """Radially averaged power spectra (log scale) and pixel-intensity histograms, one line per image set."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, (f, p) in spectra.items():
        ax1.semilogy(f, np.maximum(p, 1e-12), label=name)
    ax1.set_xlabel("spatial frequency (cycles/pixel)")
    ax1.set_ylabel("power")
    ax1.set_title("Radially averaged power spectrum")
    ax1.legend(fontsize=8)
    bins = np.linspace(0, 1, 51)
    for name, x in pixels.items():
        ax2.hist(np.ravel(x), bins=bins, density=True, histtype="step", lw=1.5, label=name)
    ax2.set_yscale("log")
    ax2.set_xlabel("intensity")
    ax2.set_title("Pixel intensities")
    fig.tight_layout()
    return fig_to_png(fig)


def difference_map_plot(maps: dict[str, dict[str, np.ndarray]], saliency: dict[str, np.ndarray]) -> bytes:
    """Per set: mean and std difference to real test (diverging, symmetric limits) and the C2ST saliency."""
    names = list(maps)
    cols = 3 if saliency else 2
    fig, axes = plt.subplots(len(names), cols, figsize=(3.2 * cols, 2.9 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        for col, stat in enumerate(("mean", "std")):
            m = maps[name][stat]
            lim = max(float(np.abs(m).max()), 1e-6)
            im = axes[row, col].imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim, origin="upper")
            axes[row, col].set_title(f"{name}: {stat} − real", fontsize=8)
            fig.colorbar(im, ax=axes[row, col], fraction=0.046)
        if saliency:
            ax = axes[row, 2]
            if name in saliency:
                ax.imshow(saliency[name], cmap="magma", origin="upper")
                ax.set_title(f"C2ST saliency: {name}", fontsize=8)
            else:
                ax.text(0.5, 0.5, "no C2ST", ha="center", va="center")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig_to_png(fig)


def gain_vs_k_plot(series: dict[str, dict[str, list[tuple[int, float, float, float]]]],
                   ylabel: str = "novel-person gain vs real only (points)") -> bytes:
    """One panel per classifier architecture: each arm's gain (points) against k, with its 95% interval
    as error bars. ``series``: arch -> arm -> [(k, mean, lo, hi)]; arms are nudged apart along k so their
    bars do not hide each other."""
    archs = list(series)
    every = list(dict.fromkeys(arm for arch in archs for arm in series[arch]))
    # one colour (and past ten arms a dashed line) per arm in every panel
    style = {arm: (f"C{i % 10}", "-" if i < 10 else "--") for i, arm in enumerate(every)}
    fig, axes = plt.subplots(1, len(archs), figsize=(5.2 * len(archs), 3.8), squeeze=False, sharey=True)
    for ax, arch in zip(axes[0], archs, strict=True):
        arms = list(series[arch])
        for i, arm in enumerate(arms):
            pts = sorted(series[arch][arm])
            k = np.array([p[0] for p in pts], dtype=float) * (1.0 + 0.04 * (i - (len(arms) - 1) / 2))
            mean = np.array([p[1] for p in pts])
            err = np.array([[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]])
            ax.errorbar(k, mean, yerr=err, marker="o", ms=4, capsize=3, label=arm, color=style[arm][0],
                        linestyle=style[arm][1])
        ax.axhline(0.0, color="k", lw=0.8)
        ks = sorted({p[0] for arm in series[arch].values() for p in arm})
        ax.set_xscale("log")
        ax.set_xlim(min(ks) / 1.5, max(ks) * 1.5)  # one k alone must not spread the nudged arms apart
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("k (real windows per novel person)")
        ax.set_title(f"{arch} architecture")
    axes[0][0].set_ylabel(ylabel)
    handles = [plt.Line2D([], [], color=style[a][0], linestyle=style[a][1], marker="o", ms=4, label=a)
               for a in every]
    axes[0][-1].legend(handles=handles, fontsize=7, loc="best")
    return fig_to_png(fig)
