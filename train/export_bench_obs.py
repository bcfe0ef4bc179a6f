"""export_bench_obs.py: a recorded observation set for policy_bench --obs, from collected demonstrations or from
a part of a recording of `rsd-gpu-worker --record-obs` (the same three files, plus rows.tsv).

Owns the set's format (read by gpu-worker/policy_bench.cpp):
  OUT/images.u8          uint8 [N, 2, 128, 128, 3]  agentview, eye_in_hand, upright, as the sim worker sends them
  OUT/proprio.f32        float32 [N, 8]              ee_pos, ee_ori (axis-angle), gripper_states
  OUT/instructions.txt   N lines                     the task's instruction
Rows are rendered rows of the demonstrations of the given trials (by default 19 and 29, the reference policy's
held-out trials), `--per-demo` of them per demonstration, evenly spaced over the episode. From a recording
(--recording), every row of the given trials is kept, so a draft distilled on the other trials of that recording
(retrain_draft.py --obs) is benched on closed-loop states it never saw; --every N keeps every N-th of them (a set
small enough to travel to the GPU machine beside the build's packages, ops/gpu/prepare.sh).

Usage: python train/export_bench_obs.py DEMO_FILE... --out DIR [--trials 19,29] [--per-demo 6]
       python train/export_bench_obs.py --recording runs/record/obs --trials 0,1 --out DIR [--every N]
Not here: the training samples (rsd_data.py), the offline decoding metrics (evaluate.py).
"""
import argparse
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rsd_data  # noqa: E402


def from_recording(rec, trials, out, every=1):
    """Every `every`-th row of `trials` of a recording -> out (the four files, rows.tsv included)."""
    r = rsd_data.read_recording(rec)
    trial_col = r["header"].split("\t").index("trial")
    keep = [i for i, ln in enumerate(r["rows"]) if int(ln.split("\t")[trial_col]) in trials][::every]
    if not keep:
        raise SystemExit(f"{rec}: no rows of trials {sorted(trials)}")
    os.makedirs(out, exist_ok=True)
    r["images"][keep].tofile(os.path.join(out, "images.u8"))
    r["proprio"][keep].tofile(os.path.join(out, "proprio.f32"))
    with open(os.path.join(out, "instructions.txt"), "w", encoding="utf-8") as f:
        f.write("".join(r["texts"][i] + "\n" for i in keep))
    with open(os.path.join(out, "rows.tsv"), "w") as f:
        f.write(r["header"] + "\n" + "".join(r["rows"][i] + "\n" for i in keep))
    print(f"export_bench_obs: {len(keep)} of {len(r['rows'])} recorded rows (trials {sorted(trials)}, every {every}) "
          f"-> {out}")
    return 0


def main():
    ap = argparse.ArgumentParser(description="observation set for policy_bench --obs")
    ap.add_argument("demos", nargs="*")
    ap.add_argument("--recording", help="a directory of rsd-gpu-worker --record-obs")
    ap.add_argument("--out", required=True)
    ap.add_argument("--trials", default="19,29")
    ap.add_argument("--per-demo", type=int, default=6)
    ap.add_argument("--every", type=int, default=1, help="with --recording: keep every N-th row of the trials")
    args = ap.parse_args()
    if args.every < 1:
        ap.error(f"--every {args.every}: must be 1 or more")
    if args.every != 1 and not args.recording:
        ap.error("--every applies to --recording only (demonstrations take --per-demo)")
    trials = {int(t) for t in args.trials.split(",")}
    if bool(args.recording) == bool(args.demos):
        ap.error("give demonstration files or --recording DIR, not both")
    if args.recording:
        return from_recording(args.recording, trials, args.out, args.every)
    imgs, props, instrs = [], [], []
    for path in sorted(args.demos):
        with h5py.File(path, "r") as f:
            for name in sorted(f["data"].keys(), key=lambda s: int(s.split("_")[1])):
                d = f["data"][name]
                if int(d.attrs["trial"]) not in trials:
                    continue
                T = d["actions"].shape[0]
                rows = np.nonzero(d["rendered"][:])[0] if "rendered" in d else np.arange(T)
                pick = rows[np.linspace(0, len(rows) - 1, min(args.per_demo, len(rows))).round().astype(int)]
                pick = sorted(set(pick.tolist()))
                prop = np.concatenate([d["obs/ee_pos"][:], d["obs/ee_ori"][:], d["obs/gripper_states"][:]], 1)
                imgs.append(np.stack([d["obs/agentview_rgb"][pick], d["obs/eye_in_hand_rgb"][pick]], 1))
                props.append(prop[pick].astype(np.float32))
                text = d.attrs["language_instruction"]
                text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
                if "\n" in text:
                    raise SystemExit(f"{path} {name}: instruction has a newline: {text!r}")
                instrs += [text] * len(pick)
    if not instrs:
        raise SystemExit(f"no demonstrations of trials {sorted(trials)} in {args.demos}")
    images = np.concatenate(imgs).astype(np.uint8)
    if images.shape[2:] != (128, 128, 3):
        raise SystemExit(f"images are {images.shape[2:]}, expected (128, 128, 3)")
    os.makedirs(args.out, exist_ok=True)
    images.tofile(os.path.join(args.out, "images.u8"))
    np.concatenate(props).astype("<f4").tofile(os.path.join(args.out, "proprio.f32"))
    with open(os.path.join(args.out, "instructions.txt"), "w") as f:
        f.write("".join(t + "\n" for t in instrs))
    print(f"export_bench_obs: {len(instrs)} observations of trials {sorted(trials)} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
