#!/usr/bin/env bash
# Installs everything rsd needs on a Debian 12 machine, idempotently: Debian packages and the project's
# Python virtual environment (torch, mujoco), with the versions pinned in ops/pins.sh. Running it again
# on a machine that is already set up changes nothing and takes a second.
#
#   ops/setup.sh [--tests]   --tests: also what only the tests need (RSD_TEST_DEBIAN_PACKAGES: Slurm)
#
#   RSD_VENV   where the virtual environment lives (default: ~/.cache/rsd/venv)
#   RSD_DATA   where the exported LIBERO scenes go (default: ~/.cache/rsd)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=ops/pins.sh
source "$here/pins.sh"

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

packages=("${RSD_DEBIAN_PACKAGES[@]}")
case ${1:-} in
  --tests) packages+=("${RSD_TEST_DEBIAN_PACKAGES[@]}") ;;
  '') ;;
  *) die "unknown argument '$1' (usage: ops/setup.sh [--tests])" ;;
esac

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "installing Debian packages needs root (or sudo): $*"
  fi
}

# --- Debian packages ---------------------------------------------------------------------------
grep -q 'bookworm\|VERSION_ID="12"' /etc/os-release 2>/dev/null ||
  log "warning: this is not Debian 12 (bookworm); package versions may differ from ops/pins.sh"
missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/tmp/rsd-apt.log 2>&1 || { tail -n 30 /tmp/rsd-apt.log >&2; die "apt-get install failed (log: /tmp/rsd-apt.log)"; }
else
  log "Debian packages: all ${#packages[@]} present"
fi

# --- Python virtual environment -----------------------------------------------------------------
venv=${RSD_VENV:-$HOME/.cache/rsd/venv}
stamp="$venv/rsd-pins.txt"
want=$(printf '%s\n' "${RSD_PYTHON_PACKAGES[@]}" --no-deps "${RSD_EXPORT_PACKAGES[@]}")
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  log "Python environment $venv: up to date"
else
  log "Python environment $venv: installing ${RSD_PYTHON_PACKAGES[*]} (a few minutes the first time)"
  [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
  rm -f "$stamp"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${RSD_PYTHON_PACKAGES[@]}" ||
    die "pip install into $venv failed"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "${RSD_EXPORT_PACKAGES[@]}" \
    2> >(grep -v -i 'deprecat\|setup.py install\|pip 23.1\|pypa/pip' >&2) ||
    die "pip install --no-deps of the LIBERO export packages into $venv failed"
  "$venv/bin/python" - <<'PY' || die "the Python environment does not import torch and mujoco"
import mujoco, torch
print(f"[setup] torch {torch.__version__}, mujoco {mujoco.__version__}")
PY
  printf '%s\n' "$want" >"$stamp"
fi

# --- LIBERO-Spatial scenes -------------------------------------------------------------------------
# Exported once into $RSD_DATA (default ~/.cache/rsd); skipped in a fraction of a second when the manifest
# says the versions and every file's hash are unchanged.
"$venv/bin/python" "$here/export_libero.py" --no-install || die "exporting the LIBERO-Spatial scenes failed"
