#!/usr/bin/env bash
# slurm_job_test.sh: ops/cluster/rsd.sbatch under a real Slurm (Debian 12's 22.05: munged, slurmctld and
# slurmd started here, privately, as a one-node cluster on 127.0.0.1 with its own ports, state and spool
# directories; nothing of the machine's own /etc/slurm or /etc/munge is read). What the srun stand-in of
# cluster_launch_test cannot show:
#   1. sbatch runs the script from Slurm's spool with the submit directory in SLURM_SUBMIT_DIR; the real
#      srun starts ops/cluster/workers.sh as a job step, whose sim workers get every CPU of the node.
#   2. scancel in the middle of an expert campaign: Slurm signals the batch script and the step; rsd stops,
#      releases its leases and says how to resume; no rsd process is left; the journal holds some results.
#   3. The same sbatch again resumes and completes the campaign: every episode stored exactly once (the two
#      runs' "stored" counts add up to the total, 0 duplicates), the report written.
#   4. A model campaign: RSD_GPUS=cpu starts a GPU worker in the step, from the broker's endpoint.
# Slurm runs jobs as their user through slurmd, which needs root: the test says so and fails otherwise.
#
#   slurm_job_test.sh REPO BUILD_DIR MODEL_DIR
set -u
repo=$1 build=$2 model=$3
rsd=$build/coordinator/rsd
fails=0 passes=0
check() { # CONDITION-STATUS MESSAGE
  if [ "$1" = 0 ]; then passes=$((passes + 1)); else fails=$((fails + 1)); echo "FAIL: $2" >&2; fi
}
die() { echo "slurm_job_test: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root: slurmd runs a job's steps as the job's user (run as root, as ops/test.sh does)"
for t in munged slurmctld slurmd sbatch srun scancel squeue sinfo scontrol; do
  command -v "$t" >/dev/null || die "no $t on PATH: ops/setup.sh --tests installs Slurm and munge (ops/pins.sh)"
done
tmp=$(mktemp -d /tmp/rsd-slurm-XXXXXX)
chmod 755 "$tmp"
cleanup() {
  [ -f "$tmp/slurm.conf" ] && SLURM_CONF=$tmp/slurm.conf scancel --full --quiet --user=root 2>/dev/null
  for f in slurmd.pid slurmctld.pid munge/munged.pid; do
    [ -s "$tmp/$f" ] && kill -TERM "$(cat "$tmp/$f")" 2>/dev/null
  done
  sleep 1
  for f in slurmd.pid slurmctld.pid munge/munged.pid; do
    [ -s "$tmp/$f" ] && kill -KILL "$(cat "$tmp/$f")" 2>/dev/null
  done
  pkill -KILL -f "$tmp" 2>/dev/null
  if [ "$fails" = 0 ]; then rm -rf "$tmp"; else echo "kept $tmp for a look" >&2; fi
}
trap cleanup EXIT

# --- a private one-node Slurm ---------------------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ctl_port=$(free_port) node_port=$(free_port)
[ -n "$ctl_port" ] && [ -n "$node_port" ] && [ "$ctl_port" != "$node_port" ] || die "no free ports ($ctl_port, $node_port)"
host=$(hostname -s)
mkdir -p "$tmp/munge" "$tmp/state" "$tmp/spool" "$tmp/log" "$tmp/jobs"
chmod 700 "$tmp/munge"
head -c 1024 /dev/urandom >"$tmp/munge/munge.key"
chmod 600 "$tmp/munge/munge.key"
munged --force --key-file="$tmp/munge/munge.key" --socket="$tmp/munge/socket" --pid-file="$tmp/munge/munged.pid" \
  --log-file="$tmp/munge/munged.log" --seed-file="$tmp/munge/seed" || die "munged did not start ($tmp/munge/munged.log)"
# The node as slurmd sees it (CPUs, sockets, cores, threads), without its memory and uptime.
node=$(slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]*//' -e 's/ RealMemory=[0-9]*//')
cat >"$tmp/slurm.conf" <<EOF
ClusterName=rsdtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctl_port
SlurmdPort=$node_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/socket
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=10
NodeName=$host NodeAddr=127.0.0.1$node State=UNKNOWN
PartitionName=rsd Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$tmp/slurm.conf
slurmctld -i || die "slurmctld did not start ($tmp/log/slurmctld.log)"
slurmd || die "slurmd did not start ($tmp/log/slurmd.log)"
for _ in $(seq 150); do [ "$(sinfo -h -o %t 2>/dev/null)" = idle ] && break; sleep 0.2; done
[ "$(sinfo -h -o %t)" = idle ] || die "the node is not idle after 30 s: $(sinfo -h -o '%t %E' 2>&1) ($tmp/log)"

submit() { # NAME ARGS...: sbatch from the repository root; prints the job id
  local name=$1
  shift
  (cd "$repo" && RSD_BUILD=$build RSD_LOG=$tmp/jobs/$name.rsd.log sbatch --parsable --output="$tmp/jobs/$name.out" "$@")
}
wait_gone() { # JOB SECONDS: until the job has left the queue
  local end=$((SECONDS + $2))
  while [ -n "$(squeue -h -j "$1" 2>/dev/null)" ] && [ "$SECONDS" -lt "$end" ]; do sleep 0.5; done
  [ -z "$(squeue -h -j "$1" 2>/dev/null)" ]
}
done_count() { "$rsd" status "$1" 2>/dev/null | sed -n 's/^campaign [^:]*: \([0-9]*\)\/.*/\1/p'; }

# --- 1-3. an expert campaign: cancelled, then resumed --------------------------------------------------
cat >"$tmp/expert.yaml" <<EOF
name: slurm_job_test
suite: libero_spatial
tasks: [0, 1, 2]
trials: 20
max_steps: 220
videos: none
output: $tmp/run1
variants:
  - name: expert
    policy: expert
workers:
  sim_workers: 0
bind:
  coordinator: tcp://127.0.0.1:*
EOF
job=$(submit cancel --nodes 1 ops/cluster/rsd.sbatch "$tmp/expert.yaml")
[ -n "$job" ] || die "sbatch refused the job: $(cat "$tmp/jobs/cancel.out" 2>/dev/null)"
end=$((SECONDS + 180)) n=0
while [ "$SECONDS" -lt "$end" ]; do
  n=$(done_count "$tmp/run1")
  [ "${n:-0}" -ge 4 ] && break
  sleep 0.2
done
[ "${n:-0}" -ge 4 ]
check $? "job $job: fewer than 4 episodes done after 180 s ($tmp/jobs/cancel.out)"
steps=$(squeue -h -s -j "$job" -o %i | grep -c "^$job\.[0-9]")
check $((steps == 1 ? 0 : 1)) "job $job: $steps srun steps running, want 1 (workers.sh)"
want=$(slurmd -C | head -n 1 | sed 's/.*CPUs=\([0-9]*\).*/\1/')
grep -q "\[workers\] $host: 0 GPU workers (none), $want sim workers (capacity 2)" "$tmp/jobs/cancel.out"
check $? "job $job: workers.sh in the step did not start one sim worker per CPU ($want): $(grep "^\[workers\] $host:" "$tmp/jobs/cancel.out")"
scancel "$job"
wait_gone "$job" 60
check $? "job $job still queued 60 s after scancel"
n1=$(done_count "$tmp/run1")
grep -q "rsd run exited .*'sbatch ops/cluster/rsd.sbatch $tmp/expert.yaml' resumes" "$tmp/jobs/cancel.out" &&
  grep -q "stopped; leases released" "$tmp/jobs/cancel.rsd.log" && [ "${n1:-0}" -gt 0 ] && [ "${n1:-0}" -lt 60 ] &&
  "$rsd" status "$tmp/run1" 2>&1 | grep -q " 0 leased now"
check $? "after scancel: want a stopped campaign with 0 < done ($n1) < 60, no lease out, and the resume hint ($tmp/jobs/cancel.out)"
left=$(pgrep -f -- "$tmp/expert.yaml|--logs $tmp/run1/logs" | wc -l)
check $((left == 0 ? 0 : 1)) "after scancel: $left rsd or worker processes left"

job2=$(submit resume --nodes 1 ops/cluster/rsd.sbatch "$tmp/expert.yaml")
wait_gone "$job2" 300
check $? "job $job2 (the resume) still queued after 300 s"
stored() { sed -n 's/.*this run: [0-9]* results (\([0-9]*\) stored, \([0-9]*\) duplicates).*/\1 \2/p' "$1"; }
read -r s1 d1 < <(stored "$tmp/jobs/cancel.rsd.log")
read -r s2 d2 < <(stored "$tmp/jobs/resume.rsd.log")
"$rsd" status "$tmp/run1" 2>&1 | grep -q "60/60 episodes done, 0 abandoned" && [ $((s1 + s2)) = 60 ] &&
  [ "$d1$d2" = 00 ] && [ -s "$tmp/run1/report.html" ] && grep -q "campaign complete; report in" "$tmp/jobs/resume.out"
check $? "the resumed job: want 60/60 done, stored $s1 + $s2 = 60 with 0 duplicates ($d1, $d2), and the report ($tmp/jobs/resume.out)"

# --- 4. a model campaign with a GPU worker (on the CPU) in the step -----------------------------------
cat >"$tmp/model.yaml" <<EOF
name: slurm_job_model
suite: libero_spatial
tasks: [0]
trials: 2
max_steps: 16
replan_every: 8
videos: none
model: $model
unnorm_key: libero_spatial
output: $tmp/run2
variants:
  - name: ar
    mode: ar
workers:
  sim_workers: 0
  gpu_workers: 0
bind:
  coordinator: tcp://127.0.0.1:*
  broker: tcp://127.0.0.1:*
  broker_gpu: tcp://127.0.0.1:*
EOF
job3=$(RSD_GPUS=cpu RSD_MODEL=$model RSD_SIM=1 submit model --nodes 1 ops/cluster/rsd.sbatch "$tmp/model.yaml")
wait_gone "$job3" 300
check $? "job $job3 (model) still queued after 300 s"
"$rsd" status "$tmp/run2" 2>&1 | grep -q "2/2 episodes done, 0 abandoned" &&
  grep -q "GPU worker $host-gpu-1 joined" "$tmp/jobs/model.rsd.log" &&
  grep -q "campaign complete; report in" "$tmp/jobs/model.out"
check $? "job $job3 (model): want 2/2 done through GPU worker $host-gpu-1 and the report ($tmp/jobs/model.out)"

echo "slurm_job_test: $passes passed, $fails failed"
[ "$fails" = 0 ]
