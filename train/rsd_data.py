"""rsd_data.py: training samples for the reference policy from `rsd-sim-worker collect` HDF5 files.

Owns how a demonstration becomes samples: one sample per row whose camera images were rendered (every row,
or the rows marked in `data/demo_N/rendered` when the file was collected with --render-every K). A sample is
  images   uint16 [2, 64, 64, 3]  both cameras (agentview, eye_in_hand), upright, each 2x2 block of the
                                  128 px frame summed (the policy average-pools 2x2 before its CNN; the sum
                                  is exact, so training sees what inference sees)
  proprio  float32 [8]            ee_pos (3), ee_ori axis-angle (3), gripper_states (2): what the sim worker sends
  instr    int64 [T]              instruction bytes + 1, padded with 0 (the package's `bytes` tokenizer)
  chunk    float32 [8, 7]         the expert's next 8 actions from this row (the last action repeated past the
                                  end of the episode)
plus the task and trial of its demonstration; `actions` holds every action of every demonstration (for the
statistics). Not here: normalization of actions (train_reference.py).

A recorded observation set (`rsd-gpu-worker --record-obs DIR`, format in gpu-worker/obs_record.h) loads with
`load_recorded`: the same images / proprio / instr per row, with the row's task, trial and step from rows.tsv, and
no chunk (a recording holds what the policy saw, not what an expert did).
"""
import glob
import os

import h5py
import numpy as np

import rsd_model as rm


def tokenize(instruction: str, max_tokens: int = rm.MAX_TOKENS) -> np.ndarray:
    b = instruction.encode("utf-8")[:max_tokens]
    out = np.zeros(max_tokens, dtype=np.int64)
    out[: len(b)] = np.frombuffer(b, dtype=np.uint8).astype(np.int64) + 1
    return out


def _pool(frames: np.ndarray) -> np.ndarray:
    """[N, 128, 128, 3] uint8 -> [N, 64, 64, 3] uint16 sums of 2x2 blocks."""
    n, h, w, c = frames.shape
    return frames.reshape(n, h // 2, 2, w // 2, 2, c).astype(np.uint16).sum((2, 4), dtype=np.uint16)


def load(paths):
    """Reads every demonstration of the files; returns a dict of stacked arrays and a list of per-demo info."""
    imgs, props, instrs, chunks, tasks, trials, demo_ids, steps, acts = [], [], [], [], [], [], [], [], []
    demos = []
    for path in sorted(paths):
        with h5py.File(path, "r") as f:
            data = f["data"]
            for name in sorted(data.keys(), key=lambda s: int(s.split("_")[1])):
                d = data[name]
                act = d["actions"][:].astype(np.float32)
                T = act.shape[0]
                rows = np.nonzero(d["rendered"][:])[0] if "rendered" in d else np.arange(T)
                prop = np.concatenate([d["obs/ee_pos"][:], d["obs/ee_ori"][:], d["obs/gripper_states"][:]],
                                      1).astype(np.float32)
                av = _pool(d["obs/agentview_rgb"][rows.tolist()])
                eh = _pool(d["obs/eye_in_hand_rgb"][rows.tolist()])
                instr = d.attrs["language_instruction"]
                if isinstance(instr, bytes):
                    instr = instr.decode("utf-8")
                task, trial = int(d.attrs["task"]), int(d.attrs["trial"])
                pad = np.concatenate([act, np.repeat(act[-1:], rm.H, 0)], 0)
                did = len(demos)
                demos.append({"file": os.path.basename(path), "task": task, "trial": trial, "steps": T,
                              "rendered": len(rows), "instruction": instr})
                imgs.append(np.stack([av, eh], 1))
                props.append(prop[rows])
                instrs.append(np.repeat(tokenize(instr)[None], len(rows), 0))
                chunks.append(np.stack([pad[t:t + rm.H] for t in rows], 0))
                tasks.append(np.full(len(rows), task))
                trials.append(np.full(len(rows), trial))
                demo_ids.append(np.full(len(rows), did))
                steps.append(rows)
                acts.append(act)
    cat = np.concatenate
    return {"images": cat(imgs), "proprio": cat(props), "instr": cat(instrs), "chunk": cat(chunks),
            "task": cat(tasks), "trial": cat(trials), "demo": cat(demo_ids), "step": cat(steps),
            "actions": cat(acts), "actions_trial": cat([np.full(len(a), d["trial"]) for a, d in zip(acts, demos)])}, demos


def read_recording(rec_dir: str) -> dict:
    """A recording's four files as they are: {header, rows (rows.tsv lines), texts, images uint8 [N, bytes per
    row], proprio float32 [N, floats per row]}; every file must hold the same number of rows (rows.tsv less its
    header), or this stops naming the files and the counts."""
    def path(name):
        p = os.path.join(rec_dir, name)
        if not os.path.exists(p):
            raise SystemExit(f"{rec_dir}: no {name} (not a recording of rsd-gpu-worker --record-obs?)")
        return p
    with open(path("rows.tsv")) as f:
        header, *rows = f.read().splitlines()
    with open(path("instructions.txt"), encoding="utf-8") as f:
        texts = f.read().splitlines()
    img = np.fromfile(path("images.u8"), dtype=np.uint8)
    prop = np.fromfile(path("proprio.f32"), dtype="<f4")
    n = len(rows)
    if len(texts) != n or img.size % max(n, 1) or prop.size % max(n, 1) or (n == 0) != (img.size == 0):
        raise SystemExit(f"{rec_dir}: rows.tsv has {n} rows, instructions.txt {len(texts)}, images.u8 {img.size} "
                         f"bytes, proprio.f32 {prop.size} floats: not {n} whole rows")
    return {"header": header, "rows": rows, "texts": texts, "images": img.reshape(n, -1),
            "proprio": prop.reshape(n, -1)}


def load_recorded(rec_dir: str, cameras: int = 2, size: int = 128, proprio: int = rm.PROPRIO) -> dict:
    """A recorded observation set -> {images, proprio, instr, task, trial, step}, for observations of `cameras`
    cameras of size x size and `proprio` floats (or this stops, naming the sizes found)."""
    r = read_recording(rec_dir)
    n, per_img = len(r["rows"]), cameras * size * size * 3
    if n and (r["images"].shape[1] != per_img or r["proprio"].shape[1] != proprio):
        raise SystemExit(f"{rec_dir}: rows of {r['images'].shape[1]} image bytes and {r['proprio'].shape[1]} proprio "
                         f"floats; expected {per_img} ({cameras} x {size} x {size} x 3) and {proprio}")
    cols = r["header"].split("\t")
    rows = [dict(zip(cols, ln.split("\t"))) for ln in r["rows"]]
    frames = r["images"].reshape(n * cameras, size, size, 3)
    pooled = np.concatenate([_pool(frames[s:s + 1024]) for s in range(0, len(frames), 1024)]) if n else \
        np.zeros((0, size // 2, size // 2, 3), np.uint16)
    return {"images": pooled.reshape(n, cameras, size // 2, size // 2, 3),
            "proprio": r["proprio"].reshape(n, proprio).astype(np.float32),
            "instr": np.stack([tokenize(t) for t in r["texts"]]) if n else np.zeros((0, rm.MAX_TOKENS), np.int64),
            "task": np.array([int(x["task"]) for x in rows], dtype=np.int64),
            "trial": np.array([int(x["trial"]) for x in rows], dtype=np.int64),
            "step": np.array([int(x["step"]) for x in rows], dtype=np.int64)}


def find(demo_dir):
    paths = sorted(glob.glob(os.path.join(demo_dir, "*.hdf5")))
    if not paths:
        raise SystemExit(f"no *.hdf5 demonstrations under {demo_dir} (run train/collect_demos.sh)")
    return paths
