#!/usr/bin/env bash
# cluster_launch_test.sh: the multi-machine launchers, run for real on this machine.
#   1. ops/cluster/rsd.sbatch as Slurm runs it on a one-node job (srun replaced by a runner that runs its
#      command here, as srun does on one node): rsd run into the config's output, workers.sh with two sim
#      workers named HOST-sim-K, the scripted expert's campaign completes, the report is written. The same
#      job again (a requeue: the same coordinator log, appended) on the finished campaign writes the report
#      and starts no worker.
#   2. The same script on a model campaign with RSD_GPUS=cpu and a tiny policy package: workers.sh starts a
#      GPU worker from the broker's endpoint file; every episode is done.
#   3. On a "two-node" job, a config that binds 127.0.0.1 is refused with the bind key named.
#   4. workers.sh gives up on a worker that dies at start, after 3 restarts (exit 1), and stops its workers
#      on SIGTERM (exit 143, none left running).
#   5. ops/systemd: the units pass systemd-analyze verify (installed at this checkout's path), and
#      start-worker.sh runs a campaign's sim and GPU workers from a workers.env; a missing setting is named.
#
#   cluster_launch_test.sh REPO BUILD_DIR MODEL_DIR
set -u
repo=$1 build=$2 model=$3
rsd=$build/coordinator/rsd
tmp=$(mktemp -d /tmp/rsd-cluster-XXXXXX)
fails=0 passes=0
check() { # CONDITION-STATUS MESSAGE
  if [ "$1" = 0 ]; then passes=$((passes + 1)); else fails=$((fails + 1)); echo "FAIL: $2" >&2; fi
}
gpid='' spid=''
cleanup() {
  pkill -KILL -f "$tmp" 2>/dev/null
  [ -n "$gpid$spid" ] && kill -KILL $gpid $spid 2>/dev/null
  if [ "$fails" = 0 ]; then rm -rf "$tmp"; else echo "kept $tmp for a look" >&2; fi
}
trap cleanup EXIT
host=$(hostname -s)
export RSD_BUILD=$build

# srun on one node: drop the options, run the command.
mkdir -p "$tmp/bin"
cat >"$tmp/bin/srun" <<'EOF'
#!/usr/bin/env bash
while [ $# -gt 0 ] && [ "${1#--}" != "$1" ]; do shift; done
exec "$@"
EOF
chmod +x "$tmp/bin/srun"

expert_config() { # FILE OUTPUT
  cat >"$1" <<EOF
name: cluster_launch_test
suite: libero_spatial
tasks: [0]
trials: 3
max_steps: 60
videos: none
output: $2   # where the report goes
variants:
  - name: expert
    policy: expert
workers:
  sim_workers: 0
bind:
  coordinator: tcp://127.0.0.1:*
EOF
}
model_config() { # FILE OUTPUT
  cat >"$1" <<EOF
name: cluster_launch_model
suite: libero_spatial
tasks: [0]
trials: 2
max_steps: 16
replan_every: 8
videos: none
model: $model
unnorm_key: libero_spatial
output: "$2"
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
}
status_has() { # OUT TEXT
  "$rsd" status "$1" 2>&1 | grep -qF "$2"
}

# 1. The Slurm script on one node, the expert campaign; the output directory from the config.
expert_config "$tmp/expert.yaml" "$tmp/run1"
(cd "$repo" && SLURM_JOB_ID=41 SLURM_SUBMIT_DIR=$repo SLURM_JOB_NUM_NODES=1 SRUN=$tmp/bin/srun RSD_SIM=2 \
  RSD_CAPACITY=1 RSD_LOG=$tmp/rsd-41.log timeout 240 bash ops/cluster/rsd.sbatch "$tmp/expert.yaml" >"$tmp/job1.out" 2>&1)
check $? "rsd.sbatch (expert) failed: $(tail -n 5 "$tmp/job1.out")"
status_has "$tmp/run1" "3/3 episodes done, 0 abandoned"
check $? "rsd.sbatch (expert): the campaign is not complete"
[ -s "$tmp/run1/report.html" ] && grep -q "campaign complete; report in" "$tmp/job1.out"
check $? "rsd.sbatch (expert): no report"
[ -s "$tmp/run1/logs/$host/sim-1.log" ] && [ -s "$tmp/run1/logs/$host/sim-2.log" ] && [ -s "$tmp/rsd-41.log" ] &&
  grep -q "campaign output $tmp/run1; coordinator at tcp://127.0.0.1:" "$tmp/job1.out"
check $? "rsd.sbatch (expert): no per-node worker logs or coordinator log"
grep -q "^rsd-sim-worker $host-sim-1: expert task 0" "$tmp/run1/logs/$host/sim-1.log" &&
  grep -q "^rsd-sim-worker $host-sim-2: expert task 0" "$tmp/run1/logs/$host/sim-2.log"
check $? "rsd.sbatch (expert): the workers did not run episodes as $host-sim-K"
start=$SECONDS
(cd "$repo" && SLURM_JOB_ID=41 SLURM_SUBMIT_DIR=$repo SLURM_JOB_NUM_NODES=1 SRUN=$tmp/bin/srun RSD_SIM=2 \
  RSD_LOG=$tmp/rsd-41.log timeout 120 bash ops/cluster/rsd.sbatch "$tmp/expert.yaml" >"$tmp/job1b.out" 2>&1)
rc=$?
[ "$rc" = 0 ] && [ "$(grep -c "sim workers connect to" "$tmp/rsd-41.log")" = 1 ] &&
  grep -q "is complete: all 3 episodes in $tmp/run1 are done or abandoned; nothing to serve" "$tmp/rsd-41.log" &&
  grep -q "campaign complete already; report in $tmp/run1/report.html" "$tmp/job1b.out" &&
  ! grep -q "starting the workers" "$tmp/job1b.out" && [ $((SECONDS - start)) -lt 20 ]
check $? "rsd.sbatch again on the finished campaign: exit $rc after $((SECONDS - start)) s ($tmp/job1b.out)"

# 2. A model campaign: a GPU worker (on the CPU) per node from RSD_GPUS, OUTPUT_DIR given.
model_config "$tmp/model.yaml" "$tmp/unused"
(cd "$repo" && SLURM_JOB_ID=42 SLURM_SUBMIT_DIR=$repo SLURM_JOB_NUM_NODES=1 SRUN=$tmp/bin/srun RSD_SIM=1 \
  RSD_GPUS=cpu RSD_MODEL=$model RSD_LOG=$tmp/rsd-42.log timeout 240 bash ops/cluster/rsd.sbatch "$tmp/model.yaml" \
  "$tmp/run2" >"$tmp/job2.out" 2>&1)
check $? "rsd.sbatch (model) failed: $(tail -n 5 "$tmp/job2.out")"
status_has "$tmp/run2" "2/2 episodes done, 0 abandoned"
check $? "rsd.sbatch (model): the campaign is not complete"
grep -q "GPU worker $host-gpu-1 joined" "$tmp/rsd-42.log"
check $? "rsd.sbatch (model): no GPU worker $host-gpu-1 joined"
[ ! -e "$tmp/unused" ]
check $? "rsd.sbatch (model): OUTPUT_DIR did not replace the config's output"

# 3. Two nodes and a loopback bind: refused before any worker starts.
expert_config "$tmp/loop.yaml" "$tmp/run3"
(cd "$repo" && SLURM_JOB_ID=43 SLURM_SUBMIT_DIR=$repo SLURM_JOB_NUM_NODES=2 SRUN=$tmp/bin/srun \
  RSD_LOG=$tmp/rsd-43.log timeout 60 bash ops/cluster/rsd.sbatch "$tmp/loop.yaml" >"$tmp/job3.out" 2>&1)
rc=$?
[ "$rc" = 2 ] && grep -q "which other nodes cannot reach: set bind.coordinator" "$tmp/job3.out" && [ ! -d "$tmp/run3/logs" ]
check $? "rsd.sbatch on 2 nodes with a 127.0.0.1 bind: exit $rc, want 2 and the bind named"

# 4. workers.sh: a worker that dies at start is given up on; SIGTERM stops every worker.
printf '#!/bin/sh\necho starting >&2\nexit 3\n' >"$tmp/bin/dying-worker"
chmod +x "$tmp/bin/dying-worker"
RSD_SIM_WORKER=$tmp/bin/dying-worker timeout 60 bash "$repo/ops/cluster/workers.sh" --coordinator tcp://127.0.0.1:9 \
  --sim 1 --logs "$tmp/logs4" >"$tmp/w4.out" 2>&1
rc=$?
[ "$rc" = 1 ] && grep -q "died 4 times in a row (last exit 3); given up" "$tmp/w4.out" &&
  [ "$(grep -c starting "$tmp/logs4/$host/sim-1.log")" = 4 ]
check $? "workers.sh with a dying worker: exit $rc, want 1 after 3 restarts ($tmp/w4.out)"
bash "$repo/ops/cluster/workers.sh" --coordinator "tcp://127.0.0.1:9" --sim 2 --capacity 1 --logs "$tmp/logs5" \
  >"$tmp/w5.out" 2>&1 &
wpid=$!
for _ in $(seq 100); do [ "$(pgrep -fc -- "--name $host-sim-.*$")" -ge 2 ] && break; sleep 0.1; done
running=$(pgrep -f -- "--coordinator tcp://127.0.0.1:9 --capacity 1 --name $host-sim-" | wc -l)
kill -TERM "$wpid"
timeout 20 tail --pid="$wpid" -f /dev/null || kill -KILL "$wpid"
wait "$wpid"
rc=$?
left=$(pgrep -f -- "--coordinator tcp://127.0.0.1:9 --capacity 1 --name $host-sim-" | wc -l)
[ "$running" = 2 ] && [ "$rc" = 143 ] && [ "$left" = 0 ]
check $? "workers.sh on SIGTERM: $running workers running before, exit $rc (want 143), $left left after"
[ "$(RSD_SIM_WORKER=/bin/true bash "$repo/ops/cluster/workers.sh" --sim 1 --gpu cpu 2>&1)" != "" ] &&
  RSD_SIM_WORKER=/bin/true bash "$repo/ops/cluster/workers.sh" --coordinator x --sim 1 --gpu cpu 2>&1 |
  grep -q -- "--gpu needs --broker"
check $? "workers.sh --gpu without --broker is not refused with its reason"

# 5. systemd: the units as installed at this checkout, then start-worker.sh serving a campaign.
mkdir -p "$tmp/units"
for u in rsd-sim-worker@.service rsd-gpu-worker@.service; do
  sed -e "s#/opt/rsd#$repo#g" -e "s#/etc/rsd/workers.env#$tmp/workers.env#" "$repo/ops/systemd/$u" >"$tmp/units/$u"
done
cp "$tmp/units/rsd-sim-worker@.service" "$tmp/units/rsd-sim-worker@1.service"
cp "$tmp/units/rsd-gpu-worker@.service" "$tmp/units/rsd-gpu-worker@0.service"
SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$tmp/units/rsd-sim-worker@1.service" \
  "$tmp/units/rsd-gpu-worker@0.service" >"$tmp/verify.out" 2>&1
check $? "systemd-analyze verify of the units: $(cat "$tmp/verify.out")"
model_config "$tmp/model5.yaml" "$tmp/run5"
"$rsd" run "$tmp/model5.yaml" 2>"$tmp/rsd5.log" &
rpid=$!
for _ in $(seq 300); do grep -q "sim workers connect to" "$tmp/rsd5.log" && break; sleep 0.1; done
sed -e "s#^RSD_HOME=.*#RSD_HOME=$repo#" -e "s#^RSD_COORDINATOR=.*#RSD_COORDINATOR=$(cat "$tmp/run5/coordinator.endpoint")#" \
  -e "s#^RSD_BROKER=.*#RSD_BROKER=$(cat "$tmp/run5/broker_gpu.endpoint")#" -e "s#^RSD_MODEL=.*#RSD_MODEL=$model#" \
  -e "s#^RSD_DATA=.*#RSD_DATA=${RSD_DATA:-$HOME/.cache/rsd}#" "$repo/ops/systemd/workers.env" >"$tmp/workers.env"
(set -a && . "$tmp/workers.env" && set +a && exec bash "$repo/ops/systemd/start-worker.sh" gpu cpu) 2>"$tmp/gpu5.log" &
gpid=$!
(set -a && . "$tmp/workers.env" && set +a && exec bash "$repo/ops/systemd/start-worker.sh" sim 1) 2>"$tmp/sim5.log" &
spid=$!
timeout 180 tail --pid="$rpid" -f /dev/null || kill -KILL "$rpid"
wait "$rpid"
rc=$?
[ "$rc" = 0 ] && status_has "$tmp/run5" "2/2 episodes done, 0 abandoned" && grep -q "GPU worker $host-gpu-cpu joined" "$tmp/rsd5.log"
check $? "start-worker.sh: the campaign did not complete with its workers (rsd exit $rc, $tmp/rsd5.log)"
for p in "$gpid" "$spid"; do # they leave on rsd's BYE and DRAIN
  timeout 20 tail --pid="$p" -f /dev/null || kill -KILL "$p"
  wait "$p"
done
env -i PATH="$PATH" RSD_HOME="$repo" bash "$repo/ops/systemd/start-worker.sh" sim 1 2>"$tmp/missing.log"
rc=$?
[ "$rc" = 2 ] && grep -q "RSD_COORDINATOR is not set" "$tmp/missing.log"
check $? "start-worker.sh without RSD_COORDINATOR: exit $rc, want 2 naming it"

echo "cluster_launch_test: $passes passed, $fails failed"
[ "$fails" = 0 ]
