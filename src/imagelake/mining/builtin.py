"""Built-in analyses: per-series statistics, HU histogram, body mask, first-order radiomics,
and statistics of raw arrays (k-space, sinograms).

Each reads its store through dask-backed arrays (one chunk at a time) and returns
:class:`~imagelake.mining.Measure` values; lazy expressions are evaluated by the engine in
one pass. They are examples to read as much as tools: simple, documented, and checked in
the tests against numpy on the source DICOM files.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from imagelake.mining._analysis import Measure, analysis

__all__ = ["body_mask", "hu_histogram", "radiomics", "raw_stats", "series_stats", "voxel_ml"]


def voxel_ml(ds: Any) -> float:
    """Volume of one voxel in ml, from the stack's pixel spacing and slice spacing."""
    spacing = ds.attrs.get("pixel_spacing") or [1.0, 1.0]
    step = ds.attrs.get("spacing_between_frames") or ds.attrs.get("slice_thickness") or 1.0
    return float(spacing[0]) * float(spacing[1]) * abs(float(step)) / 1000.0


def _unit(ds: Any) -> str:
    return str(ds.image.attrs.get("units") or "")


@analysis(
    "series-stats",
    version="1",
    description="mean, standard deviation, minimum, maximum and voxel count of the image",
)
def series_stats(ds: Any) -> dict[str, Measure]:
    """Mean, standard deviation (population), minimum, maximum and voxel count of ``image``
    in physical units (HU for CT)."""
    image = ds.image
    unit = _unit(ds)
    # stored pixels are never NaN: skipna=False spares a masked copy of every chunk
    return {
        "mean": Measure(image.mean(skipna=False), unit),
        "std": Measure(image.std(skipna=False), unit),
        "min": Measure(image.min(skipna=False), unit),
        "max": Measure(image.max(skipna=False), unit),
        "n_voxels": Measure(int(image.size)),
    }


#: tissue classes by HU range (inclusive), as the HU-histogram analysis reports them
HU_CLASSES = {
    "air": (None, -900.0),
    "lung": (-900.0, -500.0),
    "fat": (-190.0, -30.0),
    "soft_tissue": (-30.0, 100.0),
    "bone": (300.0, None),
}


@analysis(
    "hu-histogram",
    version="1",
    modalities=("CT",),
    params={"lower": -1024.0, "upper": 3072.0, "bin_width": 16.0},
    description="HU histogram (payload) and the fraction of voxels per tissue class",
)
def hu_histogram(
    ds: Any, *, lower: float = -1024.0, upper: float = 3072.0, bin_width: float = 16.0
) -> dict[str, Measure]:
    """Histogram of the CT image in HU with bins of ``bin_width`` from ``lower`` to
    ``upper`` (values outside are not counted), and the fraction of all voxels in each
    tissue class of :data:`HU_CLASSES`."""
    import dask.array as da

    image = ds.image
    edges = np.arange(lower, upper + bin_width / 2, bin_width)
    counts, _ = da.histogram(image.data, bins=edges)
    out = {
        "hu_histogram": Measure(
            counts.sum(), "voxels", {"edges": edges.tolist(), "counts": counts}
        ),
    }
    for name, (lo, hi) in HU_CLASSES.items():
        if lo is None:
            inside = image <= hi
        elif hi is None:
            inside = image >= lo
        else:
            inside = (image >= lo) & (image <= hi)
        out[f"{name}_fraction"] = Measure(inside.mean(), "")
    return out


@analysis(
    "body-mask",
    version="1",
    modalities=("CT",),
    params={"threshold": -500.0},
    description="volume of the body (voxels above a HU threshold) and its mean HU",
)
def body_mask(ds: Any, *, threshold: float = -500.0) -> dict[str, Measure]:
    """The body as every voxel above ``threshold`` HU: its volume (ml), its fraction of
    the image, and its mean HU. A threshold mask (no hole filling, no table removal): a
    simple, reproducible measure for the demo and for quality checks."""
    image = ds.image
    mask = image > threshold
    n = mask.sum()
    return {
        "body_voxels": Measure(n, "voxels"),
        "body_volume_ml": Measure(n * voxel_ml(ds), "ml"),
        "body_fraction": Measure(mask.mean(), ""),
        "body_mean_hu": Measure(image.where(mask).mean(), _unit(ds)),
    }


def _roi(image: Any, roi: Any) -> Any:
    if roi is None:
        return image
    z0, z1, y0, y1, x0, x1 = (int(v) for v in roi)
    return image.isel(
        {image.dims[0]: slice(z0, z1), image.dims[1]: slice(y0, y1), image.dims[2]: slice(x0, x1)}
    )


@analysis(
    "radiomics",
    version="1",
    params={"lower": -500.0, "upper": 3000.0, "roi": None, "bin_width": 25.0},
    description="first-order radiomics features of the voxels in a mask",
)
def radiomics(
    ds: Any,
    *,
    lower: float = -500.0,
    upper: float = 3000.0,
    roi: list[int] | None = None,
    bin_width: float = 25.0,
) -> dict[str, Measure]:
    """First-order features (IBSI-style) of the voxels whose value lies in
    ``[lower, upper]``, optionally inside a voxel box ``roi = [z0, z1, y0, y1, x0, x1]``.

    Features: voxels, volume (ml), mean, standard deviation, skewness, excess kurtosis,
    minimum, maximum, energy (sum of squares), root mean square, entropy (log2) and
    uniformity of the values binned by ``bin_width`` from ``lower``, and the 10th, 50th
    and 90th percentiles (to the nearest unit: from a histogram of 1-unit bins). Two
    passes over the chunks: sums and histograms, then central moments.
    """
    import dask
    import dask.array as da

    image = _roi(ds.image, roi)
    data = image.data
    mask = (data >= lower) & (data <= upper)
    weights = mask.astype("f8")
    values = da.where(mask, data, 0.0)
    coarse_edges = np.arange(lower, upper + bin_width, bin_width)
    fine_edges = np.arange(np.floor(lower), np.ceil(upper) + 2.0, 1.0)
    coarse, _ = da.histogram(data, bins=coarse_edges, weights=weights)
    fine, _ = da.histogram(data, bins=fine_edges, weights=weights)
    n, s1, s2, lo, hi, coarse, fine = dask.compute(
        mask.sum(),
        values.sum(),
        (values * values).sum(),
        da.where(mask, data, np.inf).min(),
        da.where(mask, data, -np.inf).max(),
        coarse,
        fine,
    )
    n = int(n)
    unit = _unit(ds)
    if n == 0:
        return {"voxels": Measure(0, "voxels"), "volume_ml": Measure(0.0, "ml")}
    mean = float(s1) / n
    centred = da.where(mask, data - mean, 0.0)
    m2, m3, m4 = (
        float(x) / n
        for x in dask.compute((centred**2).sum(), (centred**3).sum(), (centred**4).sum())
    )
    p = coarse[coarse > 0] / n
    cumulative = np.cumsum(fine)

    def percentile(q: float) -> float:
        return float(fine_edges[int(np.searchsorted(cumulative, q * n))])

    return {
        "voxels": Measure(n, "voxels"),
        "volume_ml": Measure(n * voxel_ml(ds), "ml"),
        "mean": Measure(mean, unit),
        "std": Measure(float(np.sqrt(m2)), unit),
        "skewness": Measure(m3 / m2**1.5 if m2 > 0 else None, ""),
        "kurtosis": Measure(m4 / m2**2 - 3.0 if m2 > 0 else None, ""),
        "min": Measure(float(lo), unit),
        "max": Measure(float(hi), unit),
        "energy": Measure(float(s2), f"{unit}^2" if unit else ""),
        "rms": Measure(float(np.sqrt(float(s2) / n)), unit),
        "entropy": Measure(float(-(p * np.log2(p)).sum()), "bits"),
        "uniformity": Measure(float((p * p).sum()), ""),
        "p10": Measure(percentile(0.10), unit),
        "p50": Measure(percentile(0.50), unit),
        "p90": Measure(percentile(0.90), unit),
    }


@analysis(
    "raw-stats",
    version="1",
    takes="raw",
    description="magnitude mean, maximum and energy of every decoded raw array",
)
def raw_stats(ds: Any) -> dict[str, Measure]:
    """For every decoded array of a raw store (``kspace``, ``sinogram``, ``rf``...): the
    mean and maximum magnitude, the energy (sum of squared magnitudes) and the number of
    samples (shape in the payload)."""
    out: dict[str, Measure] = {}
    for name, var in ds.data_vars.items():
        magnitude = abs(var)
        shape = {"dims": list(var.dims), "shape": list(var.shape)}
        out[f"{name}_abs_mean"] = Measure(magnitude.mean())
        out[f"{name}_abs_max"] = Measure(magnitude.max())
        out[f"{name}_energy"] = Measure((magnitude * magnitude).sum())
        out[f"{name}_samples"] = Measure(int(var.size), "", shape)
    return out
