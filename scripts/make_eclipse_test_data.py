"""Cut the Eclipse example of dicompyler-core 0.5.6 down to what plancheck's tests need.

The source distribution of dicompyler-core 0.5.6 (BSD licence, (c) 2009-2023 Aditya Panchal
and dicompyler-core contributors) carries an Eclipse breast export whose RT Dose embeds
Eclipse's own DVHs (DVH Sequence). This script keeps the structures the tests use, crops the
dose grid to their bounding box plus a margin (voxel values, spacing and scaling unchanged, so
every dose inside the structures is the same), and keeps the DVH Sequence items of those
structures. Usage::

    pip download --no-deps --no-binary :all: dicompyler-core==0.5.6
    tar xzf dicompyler-core-0.5.6.tar.gz
    python scripts/make_eclipse_test_data.py dicompyler-core-0.5.6/tests/testdata/example_data tests/data/eclipse_example
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pydicom

KEEP = ("Borders", "Heart", "Nodes", "Scar", "Tumor Bed", "Tumor Bed Block")
MARGIN_VOXELS = 3


def main(source: Path, target: Path) -> None:
    rtss = pydicom.dcmread(source / "rtss.dcm")
    rtdose = pydicom.dcmread(source / "rtdose.dcm")
    numbers = {int(r.ROINumber) for r in rtss.StructureSetROISequence if r.ROIName in KEEP}
    rtss.StructureSetROISequence = [r for r in rtss.StructureSetROISequence if int(r.ROINumber) in numbers]
    rtss.ROIContourSequence = [r for r in rtss.ROIContourSequence if int(r.ReferencedROINumber) in numbers]
    rtss.RTROIObservationsSequence = [r for r in rtss.RTROIObservationsSequence if int(r.ReferencedROINumber) in numbers]
    points = np.vstack([np.asarray(c.ContourData, dtype=float).reshape(-1, 3)
                        for r in rtss.ROIContourSequence for c in r.ContourSequence])
    lo, hi = points.min(axis=0), points.max(axis=0)

    ipp = np.asarray(rtdose.ImagePositionPatient, dtype=float)
    dx, dy = (float(v) for v in rtdose.PixelSpacing[::-1])  # PixelSpacing is row (y), column (x)
    offsets = np.asarray(rtdose.GridFrameOffsetVector, dtype=float)
    x = ipp[0] + dx * np.arange(rtdose.Columns)
    y = ipp[1] + dy * np.arange(rtdose.Rows)
    z = ipp[2] + offsets

    def window(axis: np.ndarray, a: float, b: float) -> slice:
        i0 = max(int(np.searchsorted(axis, a)) - MARGIN_VOXELS, 0)
        i1 = min(int(np.searchsorted(axis, b)) + MARGIN_VOXELS, len(axis))
        return slice(i0, i1)

    sx, sy, sz = window(x, lo[0], hi[0]), window(y, lo[1], hi[1]), window(z, lo[2], hi[2])
    pixels = rtdose.pixel_array[sz, sy, sx]
    rtdose.NumberOfFrames = pixels.shape[0]
    rtdose.Rows, rtdose.Columns = pixels.shape[1], pixels.shape[2]
    rtdose.ImagePositionPatient = [float(x[sx.start]), float(y[sy.start]), float(z[sz.start])]
    rtdose.GridFrameOffsetVector = [float(v) for v in offsets[sz] - offsets[sz.start]]
    rtdose.PixelData = np.ascontiguousarray(pixels).astype(pixels.dtype).tobytes()
    rtdose.DVHSequence = [d for d in rtdose.DVHSequence
                          if int(d.DVHReferencedROISequence[0].ReferencedROINumber) in numbers]
    target.mkdir(parents=True, exist_ok=True)
    rtss.save_as(target / "rtss.dcm")
    rtdose.save_as(target / "rtdose.dcm")
    print(f"kept ROIs {sorted(numbers)}; dose grid cropped to {pixels.shape} (z, y, x)")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
