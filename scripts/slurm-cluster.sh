#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the tests that submit emitted sweeps
# (tests/slurm_cli.rs): Debian's slurm-wlm 22.05 (installed when missing, as root), no
# systemd, no munge (AuthType=auth/none with CredType=cred/none), the node's real CPUs and
# memory, a fake GPU gres on an existing character device so that `--gres=gpu:1` schedules.
#
#     scripts/slurm-cluster.sh start     # installs if needed, writes the config, starts the daemons
#     scripts/slurm-cluster.sh stop
#
# The configuration and state live under ${MULTIFAIR_SLURM_DIR:-/tmp/multifair-slurm}.
set -euo pipefail
dir=${MULTIFAIR_SLURM_DIR:-/tmp/multifair-slurm}
conf=/etc/slurm/slurm.conf

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null; then
        return
    fi
    echo "slurm: installing slurmctld, slurmd and slurm-client (Debian's slurm-wlm)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client >/dev/null
}

configure() {
    mkdir -p "$dir/state" "$dir/spool" "$dir/log" /etc/slurm
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {print int($2 / 1024) - 1024}' /proc/meminfo)
    cat > "$conf" <<EOF
ClusterName=multifair
SlurmctldHost=$host
AuthType=auth/none
CredType=cred/none
AuthInfo=cred_expire=10
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
MaxArraySize=1001
ReturnToService=2
GresTypes=gpu
JobRequeue=1
NodeName=$host CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    # A GPU gres needs a File= that exists: a character device stands in for /dev/nvidia0.
    echo "NodeName=$host Name=gpu File=/dev/null" > /etc/slurm/gres.conf
}

start() {
    install
    stop quiet
    configure
    slurmctld -f "$conf"
    slurmd -f "$conf"
    for _ in $(seq 1 60); do
        if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            echo "slurm: up ($(sinfo -h -o '%N %c CPUs %m MiB %G'))"
            return
        fi
        scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
    echo "slurm: the node did not come up; see $dir/log" >&2
    exit 1
}

stop() {
    for pid in "$dir/slurmd.pid" "$dir/slurmctld.pid"; do
        if [ -f "$pid" ]; then
            kill "$(cat "$pid")" 2>/dev/null || true
            rm -f "$pid"
        fi
    done
    pkill -x slurmd 2>/dev/null || true
    pkill -x slurmctld 2>/dev/null || true
    [ "${1:-}" = quiet ] || echo "slurm: stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
