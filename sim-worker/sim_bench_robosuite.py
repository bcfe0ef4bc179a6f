#!/usr/bin/env python3
"""robosuite's side of the simulator benchmark (sim-worker/sim_bench.c): LIBERO's env stepping one task.

It builds one LIBERO-Spatial task the way LIBERO's evaluation does (the import set-up and env classes of
ops/export_libero.py, imported, not copied): OffScreenRenderEnv with camera_heights/widths 128 or 256 and
the cameras agentview + robot0_eye_in_hand for the rendering modes, and for the no-rendering mode the same
env without a renderer (ControlEnv with has_offscreen_renderer=False, use_camera_obs=False). For each mode it
seeds the env (0), resets it, writes the trial's fixture poses from the export (as fidelity_reference.py
does), calls set_init_state with the trial's initial state, runs LIBERO's wait steps [0,0,0,0,0,0,-1], and then
times env.step alone over the policy actions read from --actions (little-endian float64, N x 7, written by
sim_bench). Construction, reset and the wait steps are not timed.

What it does not do: choose the actions (sim_bench writes them), pin itself unless --cpu is given (sim_bench
runs it pinned: the affinity is inherited), or compare anything with rsd (sim_bench does, from the JSON).

Output: one JSON object on stdout (or --json FILE): per mode the wall and CPU seconds of the timed steps,
each step's wall time in ms, and the last observation's robot0_eef_pos and robot0_gripper_qpos (so that the
caller can check that both sides followed the same trajectory).

Usage: sim_bench_robosuite.py --actions FILE [--task 0] [--trial 0] [--modes 0,128,256] [--wait 10]
                              [--data DIR] [--cpu N] [--json FILE]
"""
import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "ops"))
import export_libero as X  # noqa: E402  (the project's LIBERO import set-up; reused, not copied)

WAIT_ACTION = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0]


def die(msg):
    print(f"sim_bench_robosuite: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def run_mode(size, task, trial, actions, wait, cfg, data_dir):
    """Builds the env for one mode (0: no renderer), puts it at the trial's initial state, times the steps."""
    import numpy as np
    import mujoco
    benchmark, get_libero_path, OffScreenRenderEnv, ControlEnv = X.import_libero(cfg["assets"])
    bench = benchmark.get_benchmark_dict()[X.SUITE]()
    if not 0 <= task < bench.get_num_tasks():
        die(f"task {task} out of range: {X.SUITE} has tasks 0..{bench.get_num_tasks() - 1}")
    t = bench.get_task(task)
    bddl = os.path.join(get_libero_path("bddl_files"), t.problem_folder, t.bddl_file)
    init_states = np.asarray(bench.get_task_init_states(task), dtype=np.float64)
    if not 0 <= trial < len(init_states):
        die(f"trial {trial} out of range: task {task} has trials 0..{len(init_states) - 1}")
    task_dir = os.path.join(data_dir, X.SUITE, f"task_{task:02d}")
    with open(os.path.join(task_dir, "task.json")) as f:
        tj = json.load(f)
    fix_bodies = tj["fixture_poses"]["bodies"]
    poses = np.fromfile(os.path.join(task_dir, "fixture_poses.f64"), dtype="<f8").reshape(
        tj["fixture_poses"]["rows"], len(fix_bodies), 7)

    t0 = time.perf_counter()
    if size:
        env = OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=size, camera_widths=size)
    else:
        env = ControlEnv(bddl_file_name=bddl, camera_heights=128, camera_widths=128, has_renderer=False,
                         has_offscreen_renderer=False, use_camera_obs=False)
    construct_s = time.perf_counter() - t0
    e = env.env
    env.seed(0)
    env.reset()
    m = e.sim.model._model
    for j, b in enumerate(fix_bodies):
        bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, b)
        m.body_pos[bid] = poses[trial, j, :3]
        m.body_quat[bid] = poses[trial, j, 3:]
    obs = env.set_init_state(init_states[trial])
    for _ in range(wait):
        obs, _, _, _ = env.step(np.array(WAIT_ACTION))
    if size:
        for cam in ("agentview", "robot0_eye_in_hand"):
            img = obs.get(cam + "_image")
            if img is None or img.shape != (size, size, 3):
                die(f"mode {size}: observation {cam}_image is {None if img is None else img.shape}, "
                    f"expected ({size}, {size}, 3)")
    step_ms = []
    done_at = None
    c0, w0 = time.process_time(), time.perf_counter()
    for i, a in enumerate(actions):
        s0 = time.perf_counter()
        obs, _, done, _ = env.step(a)
        step_ms.append((time.perf_counter() - s0) * 1e3)
        if done and done_at is None:
            done_at = i
    wall_s, cpu_s = time.perf_counter() - w0, time.process_time() - c0
    out = {"image_size": size, "steps": len(actions), "wall_s": wall_s, "cpu_s": cpu_s,
           "construct_s": construct_s, "step_ms": step_ms, "success_at": done_at,
           "eef_pos": obs["robot0_eef_pos"].tolist(), "gripper_qpos": obs["robot0_gripper_qpos"].tolist(),
           "env": type(env).__name__}
    env.close()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--actions", required=True, help="policy actions: little-endian float64, N x 7")
    ap.add_argument("--task", type=int, default=0)
    ap.add_argument("--trial", type=int, default=0)
    ap.add_argument("--modes", default="0,128,256", help="image sizes, 0 for no renderer")
    ap.add_argument("--wait", type=int, default=10, help="LIBERO's wait steps before the policy steps")
    ap.add_argument("--data", default=os.environ.get("RSD_DATA") or os.path.expanduser("~/.cache/rsd"),
                    help="the export's directory (default: $RSD_DATA, else ~/.cache/rsd)")
    ap.add_argument("--cpu", type=int, default=None, help="pin this process to CPU N")
    ap.add_argument("--json", default=None, help="write the result here instead of stdout")
    args = ap.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    try:
        modes = [int(x) for x in args.modes.split(",")]
    except ValueError:
        die(f"--modes '{args.modes}': expected image sizes separated by commas")
    for s in modes:
        if s not in (0, 128, 224, 256):
            die(f"--modes: image size {s} not supported (0, 128, 224, 256)")
    import numpy as np
    raw = np.fromfile(args.actions, dtype="<f8")
    if raw.size == 0 or raw.size % 7:
        die(f"--actions {args.actions}: {raw.size} float64 values, not a non-empty multiple of 7")
    actions = raw.reshape(-1, 7)

    tmp = tempfile.mkdtemp(prefix="rsd-sim-bench-")
    try:
        # The rendering modes need OpenGL: OSMesa on CPU unless MUJOCO_GL says otherwise.
        cfg = X.setup_libero_env(tmp, render=any(modes))
        X.install_import_stubs()
        results = [run_mode(s, args.task, args.trial, actions, args.wait, cfg, os.path.abspath(args.data))
                   for s in modes]
    finally:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    import mujoco
    import robosuite
    out = {"format": 1, "suite": X.SUITE, "task": args.task, "trial": args.trial, "wait_steps": args.wait,
           "mujoco_gl": os.environ.get("MUJOCO_GL"), "affinity": sorted(os.sched_getaffinity(0)),
           "versions": {"robosuite": robosuite.__version__, "mujoco": mujoco.__version__,
                        "numpy": np.__version__, "python": sys.version.split()[0]},
           "modes": results}
    text = json.dumps(out)
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            f.write(text)
        os.replace(args.json + ".tmp", args.json)
    else:
        print(text)


if __name__ == "__main__":
    main()
