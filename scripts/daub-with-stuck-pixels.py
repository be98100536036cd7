#!/usr/bin/env python3
"""DAUB sequences 1-6 with the stuck pixels of an uncalibrated camera, for `srsnet run --defect-frames`.

Writes OUT/sequenceN/ (frames/ + centroids.csv, the DAUB layout) from ../shared/data/daub: 12 stuck
pixels per sequence, half at 255 and half at 0, at the same place in every frame and more than
20 px from every annotated centroid (seeded per sequence, so the figures in README.md repeat).
Needs numpy and Pillow. Usage: scripts/daub-with-stuck-pixels.py [DAUB_DIR] [OUT]
"""
import csv
import os
import random
import shutil
import sys

import numpy as np
from PIL import Image

root = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/daub"
out = sys.argv[2] if len(sys.argv) > 2 else "/tmp/daubstuck"
for s in range(1, 7):
    src, dst = f"{root}/sequence{s}", f"{out}/sequence{s}"
    os.makedirs(f"{dst}/frames", exist_ok=True)
    shutil.copy(f"{src}/centroids.csv", dst)
    centroids = [(float(r["x"]), float(r["y"])) for r in csv.DictReader(open(f"{src}/centroids.csv"))]
    names = sorted(os.listdir(f"{src}/frames"))
    h, w = np.array(Image.open(f"{src}/frames/{names[0]}")).shape[:2]
    rng = random.Random(s)
    stuck = []
    while len(stuck) < 12:
        x, y = rng.randrange(1, w - 1), rng.randrange(1, h - 1)
        if all((x - cx) ** 2 + (y - cy) ** 2 > 400 for cx, cy in centroids):
            stuck.append((x, y, 255 if len(stuck) % 2 == 0 else 0))
    for name in names:
        frame = np.array(Image.open(f"{src}/frames/{name}"))
        for x, y, v in stuck:
            frame[y, x] = v
        Image.fromarray(frame).save(f"{dst}/frames/{name}")
    print(f"{dst}: {len(names)} frames of {w}x{h}, stuck pixels {stuck}")
