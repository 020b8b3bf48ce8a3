"""SYNTHETIC ultrasound RF channel data, written as a USTB UFF file (HDF5).

:func:`uff_channel_data` simulates one 0° plane-wave transmit on a linear array and the
echoes of a few point scatterers (Gaussian-modulated pulse, two-way delay ``(z + |e - s|)
/ c``, a little noise), and writes it in the layout ``pyuff-ustb``'s ``ChannelData.write``
produces, using h5py directly so that ``pyuff-ustb`` stays a test-only dependency. The
data is SYNTHETIC: the group's ``info`` string says so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imagelake._optional import import_optional

__all__ = ["DEFAULT_SCATTERERS", "SYNTHETIC_INFO", "uff_channel_data"]

#: point scatterers as (x, z) in metres
DEFAULT_SCATTERERS: tuple[tuple[float, float], ...] = (
    (0.0, 10e-3),
    (-5e-3, 20e-3),
    (5e-3, 30e-3),
)
SYNTHETIC_INFO = "SYNTHETIC imagelake test data: plane-wave RF of point scatterers"

_FALSE = np.array([0])
_TRUE = np.array([1])


def _number(h5: Any, path: str, value: Any) -> None:
    ds = h5.create_dataset(path, data=value)
    ds.attrs["class"] = "single"
    ds.attrs["name"] = path.rsplit("/", 1)[-1]
    ds.attrs["complex"] = _FALSE
    ds.attrs["imaginary"] = _FALSE


def _string(h5: Any, path: str, value: str) -> None:
    ds = h5.create_dataset(path, data=np.array([[ord(c)] for c in value], dtype=np.uint16))
    ds.attrs["class"] = "char"
    ds.attrs["name"] = path.rsplit("/", 1)[-1]


def _group(h5: Any, path: str, cls: str, *, size: int = 1, array: bool = False) -> Any:
    g = h5.create_group(path)
    g.attrs["array"] = _TRUE if array else _FALSE
    g.attrs["class"] = cls
    g.attrs["name"] = path.rsplit("/", 1)[-1]
    g.attrs["size"] = np.array([1, size])
    return g


def _point(
    h5: Any, path: str, distance: float, azimuth: float = 0.0, elevation: float = 0.0
) -> None:
    _group(h5, path, "uff.point")
    _number(h5, f"{path}/azimuth", azimuth)
    _number(h5, f"{path}/distance", distance)
    _number(h5, f"{path}/elevation", elevation)


def simulate_plane_wave(
    *,
    n_elements: int = 64,
    n_samples: int = 1024,
    scatterers: Sequence[tuple[float, float]] = DEFAULT_SCATTERERS,
    pitch: float = 0.3e-3,
    sampling_frequency: float = 20e6,
    center_frequency: float = 5e6,
    sound_speed: float = 1540.0,
    noise: float = 0.01,
    seed: int = 0,
) -> np.ndarray[Any, Any]:
    """RF channel data ``(channel, time)`` float32 of one 0° plane wave (SYNTHETIC)."""
    x_el = (np.arange(n_elements) - (n_elements - 1) / 2) * pitch
    t = np.arange(n_samples) / sampling_frequency
    rf = np.zeros((n_elements, n_samples), dtype=np.float64)
    sigma = 1.0 / center_frequency  # pulse envelope width (s)
    for xs, zs in scatterers:
        delay = (zs + np.hypot(x_el - xs, zs)) / sound_speed  # (channel,)
        tau = t[None, :] - delay[:, None]
        rf += np.exp(-((tau / sigma) ** 2)) * np.cos(2 * np.pi * center_frequency * tau)
    rng = np.random.default_rng(seed)
    rf += noise * rng.standard_normal(rf.shape)
    return rf.astype(np.float32)


def uff_channel_data(
    dest: str | os.PathLike[str],
    *,
    n_elements: int = 64,
    n_samples: int = 1024,
    scatterers: Sequence[tuple[float, float]] = DEFAULT_SCATTERERS,
    seed: int = 0,
    pitch: float = 0.3e-3,
    sampling_frequency: float = 20e6,
    center_frequency: float = 5e6,
    sound_speed: float = 1540.0,
) -> Path:
    """Write a SYNTHETIC plane-wave RF file in USTB's UFF layout; return its path.

    The group ``/channel_data`` (class ``uff.channel_data``) holds ``data`` stored
    ``(frame, wave, channel, time) = (1, 1, n_elements, n_samples)`` float32, the
    sampling frequency, sound speed, a linear-array probe and one plane wave, exactly as
    ``pyuff_ustb.ChannelData(...).write(dest, "channel_data")`` lays them out.
    """
    h5py = import_optional("h5py", extra="raw", feature="writing UFF files")
    rf = simulate_plane_wave(
        n_elements=n_elements, n_samples=n_samples, scatterers=scatterers, pitch=pitch,
        sampling_frequency=sampling_frequency, center_frequency=center_frequency,
        sound_speed=sound_speed, seed=seed,
    )  # fmt: skip
    out = Path(dest)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    width, height = 0.9 * pitch, 5e-3
    x_el = (np.arange(n_elements) - (n_elements - 1) / 2) * pitch
    geometry = np.zeros((7, n_elements))
    geometry[0] = x_el
    geometry[5] = width
    geometry[6] = height
    with h5py.File(tmp, "w") as h5:
        root = "channel_data"
        _group(h5, root, "uff.channel_data")
        _number(h5, f"{root}/PRF", 1000.0)
        _number(h5, f"{root}/data", rf[None, None, :, :])
        _number(h5, f"{root}/initial_time", 0.0)
        _number(h5, f"{root}/modulation_frequency", 0.0)
        _number(h5, f"{root}/sampling_frequency", float(sampling_frequency))
        _number(h5, f"{root}/sound_speed", float(sound_speed))
        _string(h5, f"{root}/info", SYNTHETIC_INFO)
        probe = f"{root}/probe"
        _group(h5, probe, "uff.linear_array")
        _number(h5, f"{probe}/N", int(n_elements))
        _number(h5, f"{probe}/element_height", height)
        _number(h5, f"{probe}/element_width", width)
        _number(h5, f"{probe}/geometry", geometry)
        _point(h5, f"{probe}/origin", 0.0)
        _number(h5, f"{probe}/pitch", float(pitch))
        seq = f"{root}/sequence"
        _group(h5, seq, "uff.wave", array=True)
        wave = f"{seq}/sequence_0001"
        _group(h5, wave, "uff.wave")
        _number(h5, f"{wave}/delay", 0.0)
        _point(h5, f"{wave}/origin", 0.0)
        _number(h5, f"{wave}/sound_speed", float(sound_speed))
        _point(h5, f"{wave}/source", float("inf"))
        front = h5.create_dataset(f"{wave}/wavefront", data=np.array([[0]]))
        front.attrs["class"] = "uff.wavefront"
        front.attrs["name"] = "wavefront"
    os.replace(tmp, out)
    return out
