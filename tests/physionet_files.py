"""Records and outcome files written in the PhysioNet/CinC 2012 challenge's format, for the tests
of the parser, the arrays and the TFDS builder."""

import tarfile

import numpy as np

from ltf.data.series.physionet_format import VARIABLES

V = {v: i for i, v in enumerate(VARIABLES)}
HAND = """Time,Parameter,Value
00:00,RecordID,1001
00:00,Age,54
00:00,Gender,0
00:00,Height,-1
00:00,ICUType,4
00:00,Weight,80
00:07,HR,73
00:07,Temp,35.1
00:37,HR,77
00:37,HR,79
01:37,Weight,81
01:37,Temp,-1
02:00,GCS,15
03:00,Temp,-1
"""


def record(rid: int, rng, n_events: int = 5, age: float = 60, icu: int = 2, scale: float = 1.0,
           height: float = 170) -> str:
    lines = ["Time,Parameter,Value", f"00:00,RecordID,{rid}", f"00:00,Age,{age}",
             f"00:00,Gender,{rid % 2}", f"00:00,Height,{height}", f"00:00,ICUType,{icu}",
             "00:00,Weight,75"]
    for k in range(n_events):
        t = 30 * (k + 1) + int(rng.integers(0, 20))
        lines.append(f"{t // 60:02d}:{t % 60:02d},HR,{scale * rng.normal(80, 10):.1f}")
        if k % 2:
            lines.append(f"{t // 60:02d}:{t % 60:02d},MAP,{scale * rng.normal(90, 5):.1f}")
    return "\n".join(lines) + "\n"


def write_set(folder, letter="a", n=40, seed=0, deaths_every=4, scale=None):
    """A set of n records <folder>/set-<letter>/<id>.txt and <folder>/Outcomes-<letter>.txt."""
    rng = np.random.default_rng(seed)
    d = folder / f"set-{letter}"
    d.mkdir(parents=True, exist_ok=True)
    out = ["RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death"]
    ids = [200000 + 7 * i for i in range(n)]
    for i, rid in enumerate(ids):
        s = 1.0 if scale is None else scale(rid)
        (d / f"{rid}.txt").write_text(record(rid, rng, 3 + i % 6, scale=s))
        out.append(f"{rid},{10 + i % 5},-1,{5 + i % 3},-1,{int(i % deaths_every == 0)}")
    (folder / f"Outcomes-{letter}.txt").write_text("\n".join(out) + "\n")
    return ids


def tar_folder(folder, letter="a"):
    path = folder / f"set-{letter}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder / f"set-{letter}", arcname=f"set-{letter}")
    return path
