"""export_bench_obs.py: a recorded observation set for policy_bench --obs, from collected demonstrations.

Owns the set's format (read by gpu-worker/policy_bench.cpp):
  OUT/images.u8          uint8 [N, 2, 128, 128, 3]  agentview, eye_in_hand, upright, as the sim worker sends them
  OUT/proprio.f32        float32 [N, 8]              ee_pos, ee_ori (axis-angle), gripper_states
  OUT/instructions.txt   N lines                     the task's instruction
Rows are rendered rows of the demonstrations of the given trials (by default 19 and 29, the reference policy's
held-out trials), `--per-demo` of them per demonstration, evenly spaced over the episode.

Usage: python train/export_bench_obs.py DEMO_FILE... --out DIR [--trials 19,29] [--per-demo 6]
Not here: the training samples (rsd_data.py), the offline decoding metrics (evaluate.py).
"""
import argparse
import os
import sys

import h5py
import numpy as np


def main():
    ap = argparse.ArgumentParser(description="observation set for policy_bench --obs")
    ap.add_argument("demos", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--trials", default="19,29")
    ap.add_argument("--per-demo", type=int, default=6)
    args = ap.parse_args()
    trials = {int(t) for t in args.trials.split(",")}
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
