"""export.py: writes a policy package (docs/model-package.md) from the trained networks.

Usage:
  python train/export.py --work WORKDIR --out models/rsd-ref-spatial   package from WORKDIR's checkpoints
  python train/export.py --random --out DIR                           an untrained package of the same shape
  python train/export.py --redraft DIR                                 re-script DIR's draft from its own weights
                                                                       (after rsd_model.Draft gained a method)

Owns the manifest (name, version, dimensions, action statistics, default decoding) and the content hash;
scripts each network with torch.jit.script and checks, before writing, that the scripted modules give the
same outputs as the Python ones on a probe batch. Not here: the networks (rsd_model.py), training.
"""
import argparse
import hashlib
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rsd_model as rm  # noqa: E402

NAME = "rsd-ref-spatial"
VERSION = "1.0"
UNNORM_KEY = "libero_spatial"


def content_hash(pkg, files):
    """docs/model-package.md: SHA-256 of the main, draft and tokenizer files, concatenated in that order."""
    h = hashlib.sha256()
    for key in ("main", "draft", "tokenizer"):
        with open(os.path.join(pkg, files[key]), "rb") as f:
            h.update(f.read())
    return "sha256:" + h.hexdigest()


def write_package(out, main, draft, tok, stats, gamma, version=VERSION):
    """Scripts the modules into out/ and writes manifest.json. stats: q01, q99 (and mean, std) lists of A."""
    os.makedirs(out, exist_ok=True)
    main, draft, tok = main.eval(), draft.eval(), tok.eval()
    files = {"main": "main.pt", "draft": "draft.pt", "tokenizer": "tokenizer.pt"}
    with torch.no_grad():
        sm, sd, st = torch.jit.script(main), torch.jit.script(draft), torch.jit.script(tok)
        _check_scripted(main, draft, tok, sm, sd, st)
    sm.save(os.path.join(out, files["main"]))
    sd.save(os.path.join(out, files["draft"]))
    st.save(os.path.join(out, files["tokenizer"]))
    mask = [True] * rm.A
    mask[rm.GRIPPER] = False
    entry = {"q01": [round(float(v), 6) for v in stats["q01"]], "q99": [round(float(v), 6) for v in stats["q99"]],
             "mask": mask}
    for k in ("mean", "std"):
        if k in stats:
            entry[k] = [round(float(v), 6) for v in stats[k]]
    manifest = {
        "format": "rsd-policy",
        "format_version": 1,
        "name": NAME,
        "version": version,
        "content_hash": content_hash(out, files),
        "cameras": rm.CAMERAS,
        "image": {"height": rm.IMG, "width": rm.IMG, "channels": 3, "dtype": "uint8"},
        "instruction": {"tokenizer": "bytes", "vocab": None, "max_tokens": rm.MAX_TOKENS},
        "proprio_dim": rm.PROPRIO,
        "chunk": {"horizon": rm.H, "action_dim": rm.A, "gripper_index": rm.GRIPPER},
        "rfsq": {"layers": main.L, "groups": main.G, "levels": main.K},
        "hidden_dim": main.hidden_dim,
        "action_stats": {UNNORM_KEY: entry},
        "decoding": {"mode": "spec", "gamma": int(gamma), "radii": [0] + [1] * (main.L - 1)},
        "modules": files,
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return manifest


def _check_scripted(main, draft, tok, sm, sd, st):
    g = torch.Generator().manual_seed(0)
    b, L, G, K = 3, main.L, main.G, main.K
    images = torch.randint(0, 256, (b, len(rm.CAMERAS), rm.IMG, rm.IMG, 3), generator=g, dtype=torch.uint8)
    proprio = torch.randn(b, rm.PROPRIO, generator=g)
    instr = torch.randint(1, 200, (b, rm.MAX_TOKENS), generator=g)
    codes = torch.randint(0, K, (b, L, G), generator=g)
    pos = torch.tensor([0, 2, L - 1])
    for a, c in zip(main.prefill(images, proprio, instr), sm.prefill(images, proprio, instr)):
        assert torch.allclose(a, c, atol=1e-4), "scripted prefill differs"
    state = sm.prefill(images, proprio, instr)[0]
    for a, c in zip(main.step(state, codes, pos), sm.step(state, codes, pos)):
        assert torch.allclose(a, c, atol=1e-4), "scripted step differs"
    lv, hv = sm.verify(state, codes, torch.zeros(b, dtype=torch.int64), L - 1)
    ls, hs = sm.step(state, codes, pos)
    assert torch.allclose(lv[torch.arange(b), pos], ls, atol=1e-5), "verify and step disagree"
    hid = sm.prefill(images, proprio, instr)[2]
    assert torch.equal(draft.propose(hid, codes, pos.clamp(min=1), 4), sd.propose(hid, codes, pos.clamp(min=1), 4))
    _check_paths(sd, hid, codes, pos.clamp(min=1))
    assert torch.allclose(tok.decode(codes), st.decode(codes), atol=1e-5), "scripted decode differs"


def _check_paths(sd, hid, codes, pos):
    """propose_paths: shape, distinct first layers, and path 0's first layer == propose's."""
    paths = sd.propose_paths(hid, codes, pos, 4, 5)
    assert paths.shape == (hid.shape[0], 5, 4, codes.shape[2]), f"propose_paths shape {tuple(paths.shape)}"
    assert torch.equal(paths[:, 0, 0], sd.propose(hid, codes, pos, 4)[:, 0]), "path 0 is not propose's first layer"
    for r in range(hid.shape[0]):
        assert len({tuple(x.tolist()) for x in paths[r, :, 0]}) == 5, "propose_paths repeats a first layer"


def load_draft(pkg):
    """The package's draft as an rsd_model.Draft (or ParallelDraft or HeadDraft, told apart by its weights) with
    its weights."""
    with open(os.path.join(pkg, "manifest.json")) as f:
        manifest = json.load(f)
    sd_old = torch.jit.load(os.path.join(pkg, manifest["modules"]["draft"])).state_dict()
    L, G, K = manifest["rfsq"]["layers"], manifest["rfsq"]["groups"], manifest["rfsq"]["levels"]
    D = sd_old["init.weight"].shape[1]
    arch = rm.HeadDraft if "target_emb.weight" in sd_old else \
        rm.ParallelDraft if "layer_query.weight" in sd_old else rm.Draft
    draft = arch(L, G, K, D, (manifest["hidden_dim"] - D) // D, sd_old["init.weight"].shape[0])
    # Buffers derived from the shapes (HeadDraft's offsets) travel in the scripted file but are not weights:
    # they must equal what the class makes; every weight must be there.
    derived = {k for k, _ in draft.named_buffers()} - set(draft.state_dict())
    for k in derived & set(sd_old):
        if not torch.equal(sd_old[k], draft.get_buffer(k)):
            raise SystemExit(f"{pkg}: the draft's {k} differs from the one {arch.__name__} derives")
    draft.load_state_dict({k: v for k, v in sd_old.items() if k not in derived})
    return draft.eval()


def write_draft(pkg, draft, same_as_old=False):
    """Scripts `draft` (an rsd_model.Draft) into pkg's draft file and rewrites the manifest's content_hash;
    main.pt and tokenizer.pt are not touched. Checks the scripted draft against the Python one (and, with
    same_as_old, that propose is unchanged from the file it replaces). Returns the new content_hash."""
    with open(os.path.join(pkg, "manifest.json")) as f:
        manifest = json.load(f)
    files = manifest["modules"]
    L, G, K = manifest["rfsq"]["layers"], manifest["rfsq"]["groups"], manifest["rfsq"]["levels"]
    sm = torch.jit.load(os.path.join(pkg, files["main"]))
    g = torch.Generator().manual_seed(0)
    b = 3
    images = torch.randint(0, 256, (b, len(rm.CAMERAS), rm.IMG, rm.IMG, 3), generator=g, dtype=torch.uint8)
    hid = sm.prefill(images, torch.randn(b, rm.PROPRIO, generator=g), torch.randint(1, 200, (b, rm.MAX_TOKENS),
                                                                                      generator=g))[2]
    codes = torch.randint(0, K, (b, L, G), generator=g)
    pos = torch.tensor([1, 2, L - 1])
    draft = draft.eval()
    with torch.no_grad():
        sd = torch.jit.script(draft)
        assert torch.equal(draft.propose(hid, codes, pos, 4), sd.propose(hid, codes, pos, 4)), "scripted propose differs"
        if same_as_old:
            old = torch.jit.load(os.path.join(pkg, files["draft"]))
            assert torch.equal(old.propose(hid, codes, pos, 4), sd.propose(hid, codes, pos, 4)), "propose changed"
        _check_paths(sd, hid, codes, pos)
    sd.save(os.path.join(pkg, files["draft"]))
    manifest["content_hash"] = content_hash(pkg, files)
    with open(os.path.join(pkg, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return manifest["content_hash"]


def redraft(pkg):
    """Re-scripts pkg's draft from its own weights with the current rsd_model.Draft (after it gained a
    method); propose must stay what it was."""
    return write_draft(pkg, load_draft(pkg), same_as_old=True)


def random_package(out, L=8, G=6, K=7, D=128, gamma=4):
    torch.manual_seed(0)
    main = rm.Main(L, G, K, D, torch.zeros(rm.PROPRIO), torch.ones(rm.PROPRIO))
    draft = rm.Draft(L, G, K, D, main.S)
    q, _ = torch.linalg.qr(torch.randn(rm.H * rm.A, G))
    tok = rm.RFSQTokenizer(L, G, K, torch.zeros(rm.H * rm.A), q, torch.ones(G))
    stats = {"q01": [-1.0] * rm.A, "q99": [1.0] * rm.A}
    return write_package(out, main, draft, tok, stats, gamma, version="0.0-untrained")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out")
    ap.add_argument("--redraft", metavar="DIR", help="re-script DIR's draft from its own weights")
    ap.add_argument("--work", help="training work directory (checkpoints of train_reference.py)")
    ap.add_argument("--random", action="store_true", help="an untrained package of the reference's shape")
    ap.add_argument("--gamma", type=int, default=0, help="default gamma (0: the one training chose)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.redraft:
        print(f"export: {args.redraft}: draft re-scripted, content_hash {redraft(args.redraft)}")
        return 0
    if not args.out:
        ap.error("--out is required")
    if args.random:
        random_package(args.out)
    else:
        ck = torch.load(os.path.join(args.work, "final.pt"), weights_only=False)
        cfg = ck["cfg"]
        main = rm.Main(cfg["L"], cfg["G"], cfg["K"], cfg["D"], ck["proprio_mean"], ck["proprio_std"])
        main.load_state_dict(ck["main"])
        draft = rm.Draft(cfg["L"], cfg["G"], cfg["K"], cfg["D"], main.S, cfg["Dd"])
        draft.load_state_dict(ck["draft"])
        tok = rm.RFSQTokenizer(cfg["L"], cfg["G"], cfg["K"], ck["tok_mean"], ck["tok_basis"], ck["tok_zscale"])
        write_package(args.out, main, draft, tok, ck["stats"], args.gamma or ck["gamma"])
    print(f"export: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
