#!/usr/bin/env python3
"""Reference trajectories from robosuite/LIBERO for the C controller's fidelity test (sim-worker/osc_test.c).

For each (task, trial) pair it builds the task as LIBERO's evaluation does (the env classes, arguments and
import set-up of ops/export_libero.py, whose functions it imports), puts the env at the trial's initial
state, runs LIBERO's 10 wait steps [0,0,0,0,0,0,-1] and then one or more action sequences, open loop:

  random    a fixed, seeded, smooth random sequence of --steps steps (low-pass filtered noise, partly beyond
            [-1, 1] so that the clipping is exercised, rotations included, the gripper switching now and then)
  expert    (with --actions FILE) the sequences given in FILE for that pair: osc_test writes there the actions
            rsd's scripted expert (sim-worker/expert.c) chose closed loop in C, so that the same grasp, carry
            and release are replayed here; FILE is {"runs": [{"task", "trial", "sequence", "actions": [[7
            numbers] per policy step]}]}, and its pairs join those of --runs

and records every step's actions and observations into one JSON file, which the C side replays open loop.

Protocol. One env per task, built with renderer-less ControlEnv arguments (LIBERO's OffScreenRenderEnv is
the same env plus an offscreen renderer and camera observables; rendering reads the simulation and never
writes it, and the export checked field by field that the renderer-less twin's model equals the rendering
env's). env.seed(0) once; per run: env.reset() (a hard reset: new model, new controller at the robot's
init_qpos, new gripper), then the fixture poses the export recorded for the trial are written into the
model (as LIBERO's own reset wrote them in the export's evaluation loop) and env.set_init_state(row).
The first reset of each env (seed 0) must give exactly the export's trial-0 fixture poses; this is checked.

Recorded per run: the start state (time, qpos, qvel, fixture poses) and the hidden state after set_init_state
(the controller's goal and nullspace target, the gripper command, the observables' clock); per step (10 wait
+ 200): the action, the observations LIBERO returns (robot0_eef_pos, robot0_eef_quat (x y z w),
robot0_gripper_qpos; robosuite samples them on its own 20 Hz clock, in this loop after the 24th of the 25
substeps), the same three read from the simulation at the end of the step (sim_*), the bowl's and plate's body
xpos and xquat (w x y z), LIBERO's success flag, the robot's joint qpos (9) and the actuator controls of the last
substep.
Positions are mjData's as robosuite leaves them after mj_step (kinematics of the state before that substep's
integration); the C side reads mjData the same way.

Usage: fidelity_reference.py OUT.json [--data DIR] [--runs 0:0,0:7,4:7,9:0,9:7] [--steps 200] [--actions FILE]
                             [--jobs 2]
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

WAIT_STEPS = 10
BOWL, PLATE = "akita_black_bowl_1", "plate_1"


def random_actions(seed, n):
    """Smooth random actions: first-order low-pass filtered Gaussian noise, amplitude up to ~1.4 (clipped by
    the controller), gripper sign flipping every 30-60 steps."""
    import numpy as np
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 7))
    x = np.zeros(6)
    grip, next_flip = -1.0, int(rng.integers(30, 60))
    for i in range(n):
        x = 0.85 * x + 0.15 * rng.normal(0.0, 2.0, 6)
        out[i, :3] = x[:3]
        out[i, 3:6] = 0.6 * x[3:6]
        if i == next_flip:
            grip, next_flip = -grip, i + int(rng.integers(30, 60))
        out[i, 6] = grip
    return out


def run_task(args):
    task, plan, steps, cfg, seed = args  # plan: [(trial, sequence name, actions or None for random)]
    X.install_import_stubs()
    import numpy as np
    import mujoco
    benchmark, get_libero_path, _OffScreenRenderEnv, ControlEnv = X.import_libero(cfg["assets"])
    bench = benchmark.get_benchmark_dict()[X.SUITE]()
    t = bench.get_task(task)
    bddl = os.path.join(get_libero_path("bddl_files"), t.problem_folder, t.bddl_file)
    init_states = np.asarray(bench.get_task_init_states(task), dtype=np.float64)
    task_dir = os.path.join(cfg["rsd_data"], X.SUITE, f"task_{task:02d}")
    with open(os.path.join(task_dir, "task.json")) as f:
        tj = json.load(f)
    fix_bodies = tj["fixture_poses"]["bodies"]
    poses = np.fromfile(os.path.join(task_dir, "fixture_poses.f64"), dtype="<f8").reshape(
        tj["fixture_poses"]["rows"], len(fix_bodies), 7)
    exported = np.fromfile(os.path.join(task_dir, "init_states.f64"), dtype="<f8").reshape(init_states.shape)
    if not np.array_equal(exported, init_states):
        raise SystemExit(f"task {task}: LIBERO's init states differ from the export's init_states.f64")

    env = ControlEnv(bddl_file_name=bddl, camera_heights=128, camera_widths=128, has_renderer=False,
                     has_offscreen_renderer=False, use_camera_obs=False)
    e = env.env
    m = e.sim.model._model
    fix_ids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, b) for b in fix_bodies]
    bowl_body, plate_body = e.objects_dict[BOWL].root_body, e.objects_dict[PLATE].root_body
    robot = e.robots[0]
    eef_body = robot.robot_model.eef_name
    import robosuite.utils.transform_utils as T
    env.seed(0)
    runs = []
    first = True
    for trial, seq, given in plan:
        env.reset()
        m = e.sim.model._model
        if first:  # the protocol's first reset after seed(0) is the export's trial 0
            got = np.array([np.concatenate([m.body_pos[b], m.body_quat[b]]) for b in fix_ids])
            if not np.array_equal(got, poses[0]):
                raise SystemExit(f"task {task}: first reset after seed(0) gives fixture poses {got.tolist()}, "
                                 f"the export recorded {poses[0].tolist()}")
            first = False
        for j, b in enumerate(fix_ids):
            m.body_pos[b] = poses[trial, j, :3]
            m.body_quat[b] = poses[trial, j, 3:]
        obs = env.set_init_state(init_states[trial])
        d = e.sim.data
        ctl = robot.controller
        bid = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, b) for b in (bowl_body, plate_body)]
        eef_bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, eef_body)
        run = {
            "task": task, "trial": trial, "sequence": seq,
            "start": {"time": float(d.time), "qpos": d.qpos.tolist(), "qvel": d.qvel.tolist(),
                      "fixture_bodies": fix_bodies, "fixture_poses": poses[trial].reshape(-1).tolist(),
                      "eef_pos": obs["robot0_eef_pos"].tolist(),
                      "goal_pos": np.asarray(ctl.goal_pos).tolist(),
                      "goal_ori": np.asarray(ctl.goal_ori).reshape(-1).tolist(),
                      "initial_joint": np.asarray(ctl.initial_joint).tolist(),
                      "gripper_current_action": np.asarray(robot.gripper.current_action).tolist(),
                      "obs_clock": float(e._observables["robot0_eef_pos"]._time_since_last_sample),
                      "obs_sampled": bool(e._observables["robot0_eef_pos"]._sampled)},
            "eef_body": eef_body, "bodies": [bowl_body, plate_body],
            "actions": [], "eef_pos": [], "eef_quat": [], "gripper_qpos": [], "bowl_pos": [], "plate_pos": [],
            "bowl_quat": [], "plate_quat": [],
            "sim_eef_pos": [], "sim_eef_quat": [], "sim_gripper_qpos": [],
            "success": [], "robot_qpos": [], "ctrl": [],
        }
        acts = random_actions(seed + 1000 * task + trial, steps) if given is None else np.asarray(given, np.float64)
        for i in range(WAIT_STEPS + len(acts)):
            a = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0]) if i < WAIT_STEPS else acts[i - WAIT_STEPS]
            obs, _, done, _ = env.step(a)
            run["actions"].append(a.tolist())
            run["eef_pos"].append(obs["robot0_eef_pos"].tolist())
            run["eef_quat"].append(obs["robot0_eef_quat"].tolist())
            run["gripper_qpos"].append(obs["robot0_gripper_qpos"].tolist())
            run["sim_eef_pos"].append(d.site_xpos[robot.eef_site_id].tolist())
            run["sim_eef_quat"].append(T.convert_quat(np.array(d.body_xquat[eef_bid]), to="xyzw").tolist())
            run["sim_gripper_qpos"].append(d.qpos[robot._ref_gripper_joint_pos_indexes].tolist())
            run["bowl_pos"].append(d.body_xpos[bid[0]].tolist())
            run["plate_pos"].append(d.body_xpos[bid[1]].tolist())
            run["bowl_quat"].append(d.body_xquat[bid[0]].tolist())
            run["plate_quat"].append(d.body_xquat[bid[1]].tolist())
            run["success"].append(bool(done))
            run["robot_qpos"].append(d.qpos[:9].tolist())
            run["ctrl"].append(d.ctrl.tolist())
        runs.append(run)
    env.close()
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output JSON file")
    ap.add_argument("--data", default=os.environ.get("RSD_DATA") or os.path.expanduser("~/.cache/rsd"),
                    help="the export's directory (default: $RSD_DATA, else ~/.cache/rsd)")
    ap.add_argument("--runs", default="0:0,0:7,4:7,9:0,9:7", help="task:trial pairs")
    ap.add_argument("--steps", type=int, default=200, help="steps of the random sequences after the wait steps")
    ap.add_argument("--actions", help="JSON file of further action sequences to replay (see above)")
    ap.add_argument("--seed", type=int, default=7, help="seed of the random action sequences")
    ap.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 3), help="tasks run in parallel")
    args = ap.parse_args()
    t0 = time.time()
    pairs = [tuple(int(x) for x in pair.split(":")) for pair in args.runs.split(",")]
    given = {}  # (task, trial) -> [(sequence, actions)]
    if args.actions:
        with open(args.actions) as f:
            for r in json.load(f)["runs"]:
                key, seq, acts = (int(r["task"]), int(r["trial"])), str(r["sequence"]), r["actions"]
                if not acts or any(len(a) != 7 for a in acts):
                    raise SystemExit(f"{args.actions}: task {key[0]} trial {key[1]} {seq}: need a list of actions of "
                                     f"7 numbers, have {len(acts)} actions")
                given.setdefault(key, []).append((seq, acts))
                if key not in pairs:
                    pairs.append(key)
    by_task = {}  # task -> [(trial, sequence, actions or None for random)]: per pair, random, then the given ones
    for task, trial in pairs:
        by_task.setdefault(task, []).append((trial, "random", None))
        by_task[task] += [(trial, seq, acts) for seq, acts in given.get((task, trial), [])]
    tmp = tempfile.mkdtemp(prefix="rsd-fidelity-")
    try:
        cfg = X.setup_libero_env(tmp, render=False)
        cfg["rsd_data"] = os.path.abspath(args.data)
        X.install_import_stubs()
        work = [(task, plan, args.steps, cfg, args.seed) for task, plan in sorted(by_task.items())]
        if args.jobs <= 1 or len(work) == 1:
            results = [run_task(w) for w in work]
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn")) as ex:
                results = list(ex.map(run_task, work))
    finally:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    out = {"format": 1, "suite": X.SUITE, "wait_steps": WAIT_STEPS, "steps": args.steps,
           "eef_quat_order": "xyzw", "runs": [r for rs in results for r in rs]}
    with open(args.out + ".tmp", "w") as f:
        json.dump(out, f)
    os.replace(args.out + ".tmp", args.out)
    print(f"fidelity_reference: {len(out['runs'])} runs in {time.time() - t0:.1f} s -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
