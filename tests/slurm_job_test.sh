#!/usr/bin/env bash
# slurm_job_test.sh: ops/cluster/rsd.sbatch under a real Slurm (Debian 12's 22.05). The test starts its own
# cluster: munged, slurmctld and two slurmd (nodes rsd-n1 and rsd-n2, both this machine with all of its
# CPUs), every daemon on 127.0.0.1 with its own ports, key, state and spool directories; nothing of the
# machine's /etc/slurm or /etc/munge is read. What the srun stand-in of cluster_launch_test cannot show:
#   1. sbatch runs the script from Slurm's spool with the submit directory in SLURM_SUBMIT_DIR; the real
#      srun starts ops/cluster/workers.sh as a job step, whose sim workers get every CPU of the node.
#   2. scancel in the middle of an expert campaign: Slurm signals the batch script and the step; rsd stops,
#      releases its leases and says how to resume; no rsd process is left; the journal holds some results.
#   3. The same sbatch again resumes the campaign; that job is requeued once (scontrol requeue) and its second
#      run, appending to the same coordinator log, completes the campaign: every episode stored exactly once
#      (the three runs' "stored" counts add up to the total, 0 duplicates), the report written.
#   4. A job of two nodes: workers.sh runs on both, its workers named after Slurm's node names, and both
#      nodes' workers run episodes of the campaign.
#   5. A model campaign: RSD_GPUS=cpu starts a GPU worker in the step, from the broker's endpoint.
# A requeued job waits cred_expire seconds before it runs again: 10 here (Slurm's default is 120).
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
for t in munged slurmctld slurmd sbatch srun scancel squeue sinfo; do
  command -v "$t" >/dev/null || die "no $t on PATH: ops/setup.sh --tests installs Slurm and munge (ops/pins.sh)"
done
tmp=$(mktemp -d /tmp/rsd-slurm-XXXXXX)
chmod 755 "$tmp"
cleanup() {
  [ -f "$tmp/slurm.conf" ] && SLURM_CONF=$tmp/slurm.conf scancel --full --quiet --user=root 2>/dev/null
  local pids
  pids=$(cat "$tmp"/*.pid "$tmp/munge/munged.pid" 2>/dev/null)
  if [ -n "$pids" ]; then
    kill -TERM $pids 2>/dev/null
    sleep 1
    kill -KILL $pids 2>/dev/null
  fi
  pkill -KILL -f "$tmp" 2>/dev/null
  if [ "$fails" = 0 ]; then rm -rf "$tmp"; else echo "kept $tmp for a look" >&2; fi
}
trap cleanup EXIT

# --- a private two-node Slurm on this machine ------------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ctl_port=$(free_port) n1_port=$(free_port) n2_port=$(free_port)
[ -n "$ctl_port" ] && [ -n "$n1_port" ] && [ -n "$n2_port" ] || die "no free ports"
host=$(hostname -s)
mkdir -p "$tmp/munge" "$tmp/state" "$tmp/spool-rsd-n1" "$tmp/spool-rsd-n2" "$tmp/log" "$tmp/jobs"
chmod 700 "$tmp/munge"
head -c 1024 /dev/urandom >"$tmp/munge/munge.key"
chmod 600 "$tmp/munge/munge.key"
munged --force --key-file="$tmp/munge/munge.key" --socket="$tmp/munge/socket" --pid-file="$tmp/munge/munged.pid" \
  --log-file="$tmp/munge/munged.log" --seed-file="$tmp/munge/seed" || die "munged did not start ($tmp/munge/munged.log)"
# A node as slurmd sees this machine (CPUs, sockets, cores, threads), without its name, memory and uptime.
node=$(slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]*//' -e 's/ RealMemory=[0-9]*//')
ncpu=$(slurmd -C | head -n 1 | sed 's/.*CPUs=\([0-9]*\).*/\1/')
cat >"$tmp/slurm.conf" <<CONF
ClusterName=rsdtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctl_port
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/socket,cred_expire=10
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool-%n
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd-%n.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=10
NodeName=rsd-n1 NodeHostname=$host NodeAddr=127.0.0.1 Port=$n1_port$node State=UNKNOWN
NodeName=rsd-n2 NodeHostname=$host NodeAddr=127.0.0.1 Port=$n2_port$node State=UNKNOWN
PartitionName=rsd Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$tmp/slurm.conf
slurmctld -i || die "slurmctld did not start ($tmp/log/slurmctld.log)"
slurmd -N rsd-n1 || die "slurmd rsd-n1 did not start ($tmp/log)"
slurmd -N rsd-n2 || die "slurmd rsd-n2 did not start ($tmp/log)"
for _ in $(seq 150); do [ "$(sinfo -h -o '%D %t' 2>/dev/null)" = "2 idle" ] && break; sleep 0.2; done
[ "$(sinfo -h -o '%D %t')" = "2 idle" ] || die "the nodes are not idle after 30 s: $(sinfo -h -N -o '%N %t %E' 2>&1) ($tmp/log)"

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

# --- 1-3. an expert campaign: cancelled, then resumed ----------------------------------------------------
cat >"$tmp/expert.yaml" <<CONF
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
CONF
job=$(submit cancel --nodes 1 ops/cluster/rsd.sbatch "$tmp/expert.yaml")
[ -n "$job" ] || die "sbatch refused the job: $(cat "$tmp/jobs/cancel.out" 2>/dev/null)"
end=$((SECONDS + 180)) n=0
while [ "$SECONDS" -lt "$end" ]; do
  n=$(done_count "$tmp/run1")
  [ "${n:-0}" -ge 4 ] && break
  sleep 0.2
done
check $((${n:-0} >= 4 ? 0 : 1)) "job $job: fewer than 4 episodes done after 180 s ($tmp/jobs/cancel.out)"
steps=$(squeue -h -s -j "$job" -o %i | grep -c "^$job\.[0-9]")
check $((steps == 1 ? 0 : 1)) "job $job: $steps srun steps running, want 1 (workers.sh)"
grep -Eq "^\[workers\] rsd-n[12]: 0 GPU workers \(none\), $ncpu sim workers \(capacity 2\)" "$tmp/jobs/cancel.out"
check $? "job $job: workers.sh in the step did not start one sim worker per CPU ($ncpu): $(grep "^\[workers\]" "$tmp/jobs/cancel.out")"
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

# The resume is requeued once (scontrol requeue: Slurm kills it and runs the same job again, with the same
# coordinator log, appended to), so the job's second run resumes what its first one stored.
job2=$(submit resume --nodes 1 ops/cluster/rsd.sbatch "$tmp/expert.yaml")
end=$((SECONDS + 180))
while [ "$SECONDS" -lt "$end" ] && [ "$(done_count "$tmp/run1")" -lt $((n1 + 4)) ]; do sleep 0.2; done
n2=$(done_count "$tmp/run1")
scontrol requeue "$job2"
check $? "scontrol requeue $job2 failed"
wait_gone "$job2" 400
check $? "job $job2 (the resume, requeued) still queued after 400 s"
stored() { sed -n 's/.*this run: [0-9]* results (\([0-9]*\) stored, \([0-9]*\) duplicates).*/\1 \2/p' "$@"; }
total=0 dups=0 runs=0
while read -r s d; do
  total=$((total + s)) dups=$((dups + d)) runs=$((runs + 1))
done < <(stored "$tmp/jobs/cancel.rsd.log" "$tmp/jobs/resume.rsd.log")
"$rsd" status "$tmp/run1" 2>&1 | grep -q "60/60 episodes done, 0 abandoned" && [ "$runs" = 3 ] && [ "$total" = 60 ] &&
  [ "$dups" = 0 ] && [ "$n2" -lt 60 ] && [ -s "$tmp/run1/report.html" ] &&
  [ "$(grep -c "sim workers connect to" "$tmp/jobs/resume.rsd.log")" = 2 ] &&
  grep -q "campaign complete; report in" "$tmp/jobs/resume.out"
check $? "the resumed and requeued job: want 60/60 done (requeued at $n2), 3 runs of rsd storing 60 results in all with 0 duplicates (got $runs runs, $total, $dups duplicates), two starts in its log, and the report ($tmp/jobs/resume.out)"

# --- 4. a job of two nodes -------------------------------------------------------------------------------
# Both nodes are this machine, so the campaign binds 127.0.0.2: loopback, as a test's sockets must be, but
# not one of the loopback spellings rsd.sbatch refuses for a job of several nodes (127.0.0.1, localhost).
sed -e "s#^output: .*#output: $tmp/run3#" -e 's/^name: .*/name: slurm_two_nodes/' -e 's/^tasks: .*/tasks: [0, 1]/' \
  -e 's/^trials: .*/trials: 4/' -e 's#coordinator: tcp://127.0.0.1:\*#coordinator: tcp://127.0.0.2:*#' \
  "$tmp/expert.yaml" >"$tmp/two.yaml"
job4=$(RSD_SIM=1 RSD_CAPACITY=1 submit two --nodes 2 ops/cluster/rsd.sbatch "$tmp/two.yaml")
wait_gone "$job4" 300
check $? "job $job4 (two nodes) still queued after 300 s"
"$rsd" status "$tmp/run3" 2>&1 | grep -q "8/8 episodes done, 0 abandoned" && grep -q "campaign complete; report in" "$tmp/jobs/two.out"
check $? "job $job4 (two nodes): want 8/8 done and the report ($tmp/jobs/two.out)"
for n in rsd-n1 rsd-n2; do
  grep -q "^rsd-sim-worker $n-sim-1: expert task" "$tmp/run3/logs/$n/sim-1.log" 2>/dev/null
  check $? "job $job4 (two nodes): node $n's sim worker $n-sim-1 ran no episode ($tmp/run3/logs/$n)"
done

# --- 5. a model campaign with a GPU worker (on the CPU) in the step --------------------------------------
cat >"$tmp/model.yaml" <<CONF
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
CONF
job5=$(RSD_GPUS=cpu RSD_MODEL=$model RSD_SIM=1 submit model --nodes 1 ops/cluster/rsd.sbatch "$tmp/model.yaml")
wait_gone "$job5" 300
check $? "job $job5 (model) still queued after 300 s"
"$rsd" status "$tmp/run2" 2>&1 | grep -q "2/2 episodes done, 0 abandoned" &&
  grep -Eq "GPU worker rsd-n[12]-gpu-1 joined" "$tmp/jobs/model.rsd.log" &&
  grep -q "campaign complete; report in" "$tmp/jobs/model.out"
check $? "job $job5 (model): want 2/2 done through GPU worker rsd-n1-gpu-1 or rsd-n2-gpu-1, and the report ($tmp/jobs/model.out)"

echo "slurm_job_test: $passes passed, $fails failed"
[ "$fails" = 0 ]
