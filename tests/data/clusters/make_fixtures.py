"""How tests/data/clusters/*.ecsv.gz were made from their public sources (run once; tests never run it).

Needs pandas (the Blanco 1 field is a pandas pickle) and checkouts of the four repositories at the
commits in tests/data/PROVENANCE.md::

    git clone https://github.com/emilyhunt/ocelot                        # @ 1c25531
    git clone https://github.com/MGJvanGroeningen/gaia_oc_amd            # checkout df47165 (the data)
    git clone https://github.com/gabriel-p-artcls/22-07_distant_clusters # @ d0945c8
    git clone https://github.com/gabriel-p-artcls/NGC2659_binar          # @ f3b7319
    python make_fixtures.py --ocelot ocelot --amd gaia_oc_amd --distant 22-07_distant_clusters \\
        --vela NGC2659_binar --out .

Every fixture keeps the Gaia values as published (ra, dec [deg], parallax [mas], pmra, pmdec
[mas/yr], G [mag]; rounded to 1e-7 deg, 1e-4 mas(/yr), 1e-4 mag) with the source_id, plus the
published membership: Cantat-Gaudin et al. (2018) UPMASK probability and cluster name
(``cg18_proba``, ``cg18_cluster``; matched by source_id, else by position within 1 arcsec, as the
DR2 ids of that catalogue and EDR3 ids mostly but not always agree), Tarricq et al. (2022)
HDBSCAN members (``t22_member``, Blanco 1) and Perren et al. (2022) members
(``perren22_member``, the distant clusters). Gzipped ECSV (``gzip -dc`` reads it; astropy reads it
with ``format="ascii.ecsv"``), written with mtime 0 so the same rows give the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import io
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
from astropy.coordinates import SkyCoord
from astropy.table import Table

AMD_COMMIT = "df471651fb778fc1e54bfcd303b2e9c0e0b503ff"
DISTANT = {"tombaugh2": ("Tombaugh 2", "Tombaugh_2"), "ber29": ("Berkeley 29", "Berkeley_29"),
           "ber25": ("Berkeley 25", "Berkeley_25"), "ber73": ("Berkeley 73", "Berkeley_73"),
           "ber75": ("Berkeley 75", "Berkeley_75"), "czernik30": ("Czernik 30", "Czernik_30"),
           "fsr1212": ("FSR 1212", "FSR_1212"), "fsr1419": ("FSR 1419", "FSR_1419"),
           "ber76": ("Berkeley 76", "Berkeley_76"), "ber102": ("Berkeley 102", "Berkeley_102"),
           "arpm2": ("Arp-Madore 2", "Arp_Madore_2"), "saurer1": ("Saurer 1", None),
           "ber26": ("Berkeley 26", None), "vdbh4": ("vdBergh-Hagen 4", None), "vdbh37": ("vdBergh-Hagen 37", None)}
VELA_CG18 = ["NGC_2659", "Pismis_8", "SAI_94", "NGC_2645"]


def crossmatch(ids, ra, dec, lit_ids, lit_ra, lit_dec, tol_arcsec=1.0) -> np.ndarray:
    """Row of the field for each literature star (-1 if none): by source_id, else by position."""
    pos = {int(s): i for i, s in enumerate(ids)}
    out = np.array([pos.get(int(s), -1) for s in lit_ids])
    miss = out < 0
    if miss.any():
        field = SkyCoord(np.asarray(ra, float) * u.deg, np.asarray(dec, float) * u.deg)
        lit = SkyCoord(np.asarray(lit_ra[miss], float) * u.deg, np.asarray(lit_dec[miss], float) * u.deg)
        idx, sep, _ = lit.match_to_catalog_sky(field)
        good = sep.arcsec < tol_arcsec
        out[np.nonzero(miss)[0][good]] = idx[good]
    return out


def base_table(source_id, ra, dec, plx, pmra, pmdec, g) -> Table:
    t = Table()
    t["source_id"] = np.asarray(source_id, dtype=np.int64)
    t["ra"] = np.round(np.asarray(ra, float) % 360.0, 7)
    t["dec"] = np.round(np.asarray(dec, float), 7)
    t["parallax"] = np.round(np.asarray(plx, float), 4)
    t["pmra"] = np.round(np.asarray(pmra, float), 4)
    t["pmdec"] = np.round(np.asarray(pmdec, float), 4)
    t["phot_g_mean_mag"] = np.round(np.asarray(g, float), 4)
    for c, unit in (("ra", "deg"), ("dec", "deg"), ("parallax", "mas"), ("pmra", "mas / yr"),
                    ("pmdec", "mas / yr"), ("phot_g_mean_mag", "mag")):
        t[c].unit = unit
    return t


def add_cg18(t: Table, amd: Path, names: list[str]) -> None:
    cluster = np.full(len(t), "", dtype=object)
    proba = np.zeros(len(t))
    for name in names:
        m = pd.read_csv(amd / "data" / "members" / f"{name}.csv")
        k = crossmatch(t["source_id"], t["ra"], t["dec"], m.Source.values, m.ra.values % 360, m.dec.values)
        ok = k >= 0
        cluster[k[ok]] = name
        proba[k[ok]] = m.PMemb.values[ok]
    t["cg18_cluster"] = np.array(cluster, dtype=str)
    t["cg18_proba"] = np.round(proba, 2)


def write(t: Table, out: Path, name: str) -> None:
    buf = io.StringIO()
    t.write(buf, format="ascii.ecsv")
    path = out / f"{name}.ecsv.gz"
    with open(path, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(buf.getvalue().encode("utf-8"))
    print(f"wrote {path}: {len(t)} rows")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name in ("ocelot", "amd", "distant", "vela", "out"):
        ap.add_argument(f"--{name}", type=Path, required=True)
    a = ap.parse_args()

    f = pd.read_pickle(a.ocelot / "tests" / "test_data" / "blanco_1_gaia_dr2_gmag_18_cut.pickle")
    t = base_table(f.source_id, f.ra, f.dec, f.parallax, f.pmra, f.pmdec, f.phot_g_mean_mag)
    add_cg18(t, a.amd, ["Blanco_1"])
    m = pd.read_csv(a.amd / "data" / "compare_members" / "Blanco_1.csv")
    k = crossmatch(t["source_id"], t["ra"], t["dec"], m.Source.values, m.ra.values % 360, m.dec.values)
    member = np.zeros(len(t), bool)
    member[k[k >= 0]] = True
    t["t22_member"] = member
    t.meta.update({
        "field": "Blanco 1, Gaia DR2, G < 18, 5 x 5 deg box",
        "source": "emilyhunt/ocelot @ 1c25531e5edb68b763da85e9f39df522cbc73681, "
                  "tests/test_data/blanco_1_gaia_dr2_gmag_18_cut.pickle (MIT)",
        "membership": "cg18_*: Cantat-Gaudin et al. 2018, A&A 618, A93 (UPMASK); t22_member: Tarricq et al. "
                      f"2022, A&A 659, A59 (HDBSCAN); both via MGJvanGroeningen/gaia_oc_amd @ {AMD_COMMIT}",
    })
    write(t, a.out, "blanco1_dr2")

    f = pd.read_csv(a.vela / "0_data" / "0_full_frames" / "UBC_482.csv")
    sid = f.EDR3Name.str.replace("Gaia EDR3 ", "").astype(np.int64)
    t = base_table(sid, f.RA_ICRS, f.DE_ICRS, f.Plx, f.pmRA, f.pmDE, f.Gmag)
    add_cg18(t, a.amd, VELA_CG18)
    t.meta.update({
        "field": "Vela, RA 129.2-133.1 deg, Dec -47.3 to -44.6 deg, Gaia EDR3, G < 19",
        "source": "gabriel-p-artcls/NGC2659_binar @ f3b731968a51fb1e093b3f117cf6b967a3038923, "
                  "0_data/0_full_frames/UBC_482.csv (Gaia EDR3 values only)",
        "membership": "cg18_*: Cantat-Gaudin et al. 2018, A&A 618, A93 (UPMASK), via "
                      f"MGJvanGroeningen/gaia_oc_amd @ {AMD_COMMIT}",
    })
    write(t, a.out, "vela_ngc2659_edr3")

    for key, (name, cg18) in DISTANT.items():
        fd = pd.read_csv(a.distant / "2_pipeline" / "2_pyUPMASK" / "GMM_2dim" / f"{key}.dat", sep=r"\s+")
        mb = pd.read_csv(a.distant / "2_pipeline" / "3_members_select" / "out" / f"{key}.dat")
        sid = fd.EDR3Name.str.replace("Gaia EDR3 ", "").astype(np.int64)
        t = base_table(sid, fd.RA_ICRS, fd.DE_ICRS, fd.Plx, fd.pmRA, fd.pmDE, fd.Gmag)
        t["perren22_member"] = np.isin(fd.EDR3Name.values, mb.EDR3Name[mb.membs_select == 1].values)
        if cg18:
            add_cg18(t, a.amd, [cg18])
        t.meta.update({
            "field": f"{name}, Gaia EDR3 box of ~0.3 deg, G < 21",
            "source": "gabriel-p-artcls/22-07_distant_clusters @ d0945c870c3b2cd64922ba75ee482c5d63e8b076, "
                      f"2_pipeline/2_pyUPMASK/GMM_2dim/{key}.dat (field), "
                      f"2_pipeline/3_members_select/out/{key}.dat (members: membs_select = 1)",
            "membership": "perren22_member: Perren et al. 2022, 'An analysis of the most distant cataloged open "
                          "clusters' (pyUPMASK, then the paper's radius and probability cut)"
                          + (f"; cg18_*: Cantat-Gaudin et al. 2018 via MGJvanGroeningen/gaia_oc_amd @ {AMD_COMMIT}"
                             if cg18 else ""),
        })
        write(t, a.out, f"{key}_edr3")


if __name__ == "__main__":
    main()
