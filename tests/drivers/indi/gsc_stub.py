"""A stand-in for the ``gsc`` program (the HST Guide Star Catalog's query tool) that
``indi_simulator_ccd`` runs to draw its stars, answering from a CSV star list instead of GSC.

Debian packages neither GSC nor its tool, so without this the CCD simulator's frames hold no
stars. The simulator runs ``gsc -c RA DEC -r RADIUS_ARCMIN -m 0 MAGLIMIT -n MAX`` (degrees,
J2000) and reads 12 columns per line (``%10s %f %f %f %f %f %d %d %4s %2s %f %d``: id, ra, dec,
position error, mag, mag error, band, class, plate, origin, distance, direction). This script
prints those columns for the stars of ``$TENMON_GSC_CATALOG`` (a CSV with ``ra``, ``dec``,
``mag`` columns: the same list tenmon's solver may be given) inside the cone, brightest first.

``IndiServer(..., gsc_catalog=path)`` (indi_rig.py) puts it on the drivers' PATH as ``gsc``.
"""

from __future__ import annotations

import csv
import math
import os
import sys


def _args(argv: list[str]) -> tuple[float, float, float, float, int]:
    ra = dec = None
    radius, mag_max, n = 10.0, 99.0, 3000
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-c":
            ra, dec = float(argv[i + 1]), float(argv[i + 2])
            i += 3
        elif a == "-r":
            radius = float(argv[i + 1])
            i += 2
        elif a == "-m":
            mag_max = float(argv[i + 2])
            i += 3
        elif a == "-n":
            n = int(argv[i + 1])
            i += 2
        else:
            i += 1
    if ra is None or dec is None:
        raise SystemExit("usage: gsc -c RA DEC -r RADIUS_ARCMIN -m MIN MAX -n COUNT")
    return ra, dec, radius, mag_max, n


def main(argv: list[str]) -> int:
    ra0, dec0, radius_arcmin, mag_max, n = _args(argv)
    path = os.environ.get("TENMON_GSC_CATALOG")
    if not path:
        print("TENMON_GSC_CATALOG is not set", file=sys.stderr)
        return 1
    a0, d0 = math.radians(ra0), math.radians(dec0)
    limit = math.radians(radius_arcmin / 60.0)
    rows = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            ra, dec, mag = float(row["ra"]), float(row["dec"]), float(row["mag"])
            if mag > mag_max:
                continue
            a, d = math.radians(ra), math.radians(dec)
            c = (math.sin(d0) * math.sin(d)
                 + math.cos(d0) * math.cos(d) * math.cos(a - a0))
            dist = math.acos(max(-1.0, min(1.0, c)))
            if dist <= limit:
                rows.append((mag, ra, dec, math.degrees(dist) * 60.0))
    rows.sort()
    out = sys.stdout
    for i, (mag, ra, dec, dist) in enumerate(rows[:n]):
        out.write(f"TNM{i:07d} {ra:10.6f} {dec:+10.6f} 0.2 {mag:6.2f} 0.40 0 0 TNMN 00 "
                  f"{dist:6.2f} 0\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
