"""Code-usage plot written with every SID build: how evenly each level's codebook is used.

A level whose bars fall off a cliff (a few codes holding most items) gives the decoder an uninformative
choice at that step; the plot makes that visible in the build artifacts and the Airflow run logs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def code_usage_plot(codes: np.ndarray, sizes: list[int], path: Path) -> Path:
    """Per level, items per code sorted by use (a flat profile = balanced codebook); PNG via the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    codes = np.asarray(codes, dtype=np.int64)
    fig, axes = plt.subplots(1, codes.shape[1], figsize=(4 * codes.shape[1], 3), squeeze=False)
    for level, ax in enumerate(axes[0]):
        counts = np.bincount(codes[:, level], minlength=sizes[level])
        ax.bar(np.arange(sizes[level]), np.sort(counts)[::-1], width=1.0)
        ax.set_title(f"level {level}: {np.count_nonzero(counts)}/{sizes[level]} codes used")
        ax.set_xlabel("code (sorted by use)")
        ax.set_ylabel("items")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
