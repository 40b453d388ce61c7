#!/usr/bin/env bash
# load-create-task.sh: load-test the coordinator's CreateTask RPC with ghz.
#
# Starts a coordinator (on a new temporary SQLite file) and one executor
# hosting the built-in handlers, both on loopback, registers a 4-step noop
# template, then runs ghz (pinned as a Go tool in go.mod) against
# tasker.coordinator.v1.CoordinatorService/CreateTask through server
# reflection: REQUESTS calls, CONCURRENCY at once, each with its own
# idempotency key so every call creates a task (the requests are written
# to a file first, so ghz does not render a template per call). Prints
# ghz's summary; when it started the coordinator and executor itself, it
# then waits for the tasks to finish and prints the CPU of each process
# (coordinator, executor, ghz) per 1,000 steps. Stops what it started.
#
# To load a coordinator that is already running instead (for example
# `go run ./cmd/tasker dev`, which serves on 127.0.0.1:7070 with an
# executor), set TASKER_COORDINATOR=127.0.0.1:7070; nothing is started then.
# Only loopback addresses are accepted.
#
# Environment: REQUESTS (default 20000), CONCURRENCY (default 50),
# PORT and EXECUTOR_PORT (defaults 17370 and 17371, used when starting the
# coordinator), SYNC (full or normal, default full), VIEW (the response's
# task view: TASK_VIEW_FULL, the default, or TASK_VIEW_BASIC, the task
# without its context, steps and transitions), TASKER_COORDINATOR.
set -euo pipefail

REQUESTS=${REQUESTS:-20000}
CONCURRENCY=${CONCURRENCY:-50}
PORT=${PORT:-17370}
EXECUTOR_PORT=${EXECUTOR_PORT:-17371}
SYNC=${SYNC:-full}
VIEW=${VIEW:-TASK_VIEW_FULL}

cd "$(dirname "$0")/.."
work=$(mktemp -d "${TMPDIR:-/tmp}/tasker-load-XXXXXX")
pids=()
cleanup() {
	# Stop only the processes this script started, newest first, by pid.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

# Build tasker once, so the pids below are the servers themselves (go run
# would put its own process in between). ghz, too, is run as the binary
# go tool builds (go tool -n builds it into the cache and prints its path)
# rather than through go tool: it is compiled before the clock runs, and
# the CPU the shell counts for it below is ghz's alone.
if [[ -n "${TASKER_BIN:-}" ]]; then
	tasker=$(realpath "$TASKER_BIN")
else
	go build -o "$work/tasker" ./cmd/tasker
	tasker="$work/tasker"
fi
ghz=$(go tool -n ghz)

if [[ -n "${TASKER_COORDINATOR:-}" ]]; then
	addr=$TASKER_COORDINATOR
	case "$addr" in
	127.*:* | localhost:* | "[::1]:"*) ;;
	*)
		echo "load-create-task: TASKER_COORDINATOR must be a loopback address, got $addr" >&2
		exit 2
		;;
	esac
else
	addr=127.0.0.1:$PORT
	"$tasker" coordinator --listen "$addr" --db "$work/tasker.db" --sync "$SYNC" \
		--log-level error --shutdown-timeout 5s &
	pids+=($!)
	"$tasker" executor --listen "127.0.0.1:$EXECUTOR_PORT" --coordinator "$addr" \
		--capacity 512 --log-level error &
	pids+=($!)
fi
export TASKER_COORDINATOR=$addr

# Wait (at most 30s) for an executor to be connected.
for _ in $(seq 300); do
	if "$tasker" executors -o json 2>/dev/null | grep -q '"connected":true'; then
		break
	fi
	sleep 0.1
done
if ! "$tasker" executors -o json | grep -q '"connected":true'; then
	echo "load-create-task: no executor connected to $addr" >&2
	exit 1
fi

cat >"$work/template.yaml" <<'YAML'
namespace: load
name: linear4
version: 1.0.0
description: Four noop steps in a line, for load tests of task creation.
steps:
  - name: initialize_data
    handler: noop
  - name: validate_input
    handler: noop
    depends_on: [initialize_data]
  - name: process_data
    handler: noop
    depends_on: [validate_input]
  - name: transform_results
    handler: noop
    depends_on: [process_data]
YAML
"$tasker" template apply "$work/template.yaml"

run_id=$(date +%s)-$$
# One request per call, each with its own idempotency key so every call
# creates a task, written out in advance: ghz sends the messages of a JSON
# array round-robin and, with its template features off, parses them once,
# instead of rendering and parsing a template on every call. That halves
# ghz's own CPU per call, which shares the two cores with the coordinator.
awk -v n="$REQUESTS" -v id="$run_id" -v view="$VIEW" 'BEGIN {
	printf "["
	for (i = 0; i < n; i++) {
		printf "%s{\"namespace\":\"load\",\"name\":\"linear4\",\"version\":\"1.0.0\",\"idempotency_key\":\"ghz-%s-%d\",\"view\":\"%s\"}", (i ? "," : ""), id, i, view
	}
	print "]"
}' >"$work/requests.json"
# cpu_ticks PID: the process's user and system CPU so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# children_cpu FILE: the CPU seconds of this shell's ended children so
# far, from the second line of the times builtin ("XmY.YYYs XmZ.ZZZs")
# written to FILE by this shell itself (in a $(...) subshell, times would
# count the subshell's children).
children_cpu() {
	awk 'NR == 2 {
		split($1, u, "m"); split($2, s, "m")
		printf "%.3f", u[1] * 60 + u[2] + s[1] * 60 + s[2]
	}' "$1"
}

started=${#pids[@]}
if ((started)); then
	coord0=$(cpu_ticks "${pids[0]}")
	exec0=$(cpu_ticks "${pids[1]}")
fi
times >"$work/times0"
echo "load-create-task: $REQUESTS CreateTask calls, $CONCURRENCY concurrent, $VIEW, against $addr"
"$ghz" --insecure \
	--call tasker.coordinator.v1.CoordinatorService/CreateTask \
	--concurrency "$CONCURRENCY" --total "$REQUESTS" --timeout 30s \
	--data-file "$work/requests.json" --disable-template-functions --disable-template-data \
	"$addr"
times >"$work/times1"

# The CPU of the processes this script started, per 1,000 of the steps the
# calls created, once those steps have run (at most 120 s more): the
# coordinator's is its share of each call and of running the task.
if ((started)); then
	for _ in $(seq 1200); do
		open=$("$tasker" task list --namespace load --state pending --limit 1 -o json)
		[[ -z "$open" ]] && open=$("$tasker" task list --namespace load --state in_progress --limit 1 -o json)
		[[ -z "$open" ]] && break
		sleep 0.1
	done
	if [[ -n "$open" ]]; then
		echo "load-create-task: tasks still open 120 s after the last call" >&2
		exit 1
	fi
	ticks=$(getconf CLK_TCK)
	awk -v c="$(($(cpu_ticks "${pids[0]}") - coord0))" -v e="$(($(cpu_ticks "${pids[1]}") - exec0))" \
		-v g0="$(children_cpu "$work/times0")" -v g1="$(children_cpu "$work/times1")" -v hz="$ticks" -v steps="$((REQUESTS * 4))" 'BEGIN {
		printf "load-create-task: CPU seconds per 1k steps (%d steps): coordinator %.3f, executor %.3f, load generator %.3f\n",
			steps, c / hz / steps * 1000, e / hz / steps * 1000, (g1 - g0) / steps * 1000
	}'
fi
