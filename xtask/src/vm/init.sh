#!/bin/sh
# /init of the initramfs of `cargo xtask vm-test`: mounts what qbench-trace needs, runs each check
# of qbench-trace against the programs in /qbench/bin, and prints on the console one line per
# check, `QBENCH-CHECK NAME ok|fail DETAIL`, between `QBENCH-BOOT RELEASE` and `QBENCH-DONE`; then
# powers the machine off. A failed check first prints the outputs it judged, each line prefixed
# with "| ", so that the host can show them. Everything runs under emulation (TCG), 10-50 times
# slower than the host: the waits are generous, the outcomes are exact.

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
B=/qbench/bin
PORT=9464

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mkdir -p /tmp
ip link set lo up
echo "QBENCH-BOOT $(uname -r)"

# --- helpers ---------------------------------------------------------------------------------

# begin NAME: a fresh directory D for the check's files; SHOW lists the files a failure prints.
begin() {
    CHECK=$1
    D=/tmp/$1
    mkdir -p "$D"
    SHOW=
    PIDS=
}

cleanup() {
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
}

ok() {
    cleanup
    echo "QBENCH-CHECK $CHECK ok $*"
}

fail() {
    for f in $SHOW; do
        [ -s "$f" ] || continue
        echo "| --- $f"
        # The start says what failed; a verifier's log says why at its end.
        if [ "$(wc -c < "$f")" -le 8000 ]; then
            sed 's/^/| /' "$f"
        else
            head -c 3000 "$f" | sed 's/^/| /'
            echo "| [...]"
            tail -c 5000 "$f" | sed 's/^/| /'
        fi
        echo
    done
    cleanup
    echo "QBENCH-CHECK $CHECK fail $*"
}

# wait_for FILE REGEX SECONDS [PID]: true once a line of FILE matches; false after SECONDS, or
# as soon as process PID has exited.
wait_for() {
    n=0
    while [ $n -lt $(($3 * 10)) ]; do
        grep -qE "$2" "$1" 2>/dev/null && return 0
        [ -n "$4" ] && ! kill -0 "$4" 2>/dev/null && return 1
        sleep 0.1
        n=$((n + 1))
    done
    return 1
}

# start ENV... -- ARGS...: starts the situations program (as the command prefix $AS, if set) (stdin held open by a pipe, its report in
# $D/report), waits for its "ready PID" line, and sets P.
start() {
    envs=
    while [ "$1" != -- ]; do
        envs="$envs $1"
        shift
    done
    shift
    sleep 100000 | env QBENCH_REPORT="$D/report" $envs $AS "$B/situations" "$@" \
        >"$D/target.out" 2>"$D/target.err" &
    SHOW="$D/target.out $D/target.err"
    if ! wait_for "$D/target.out" '^ready [0-9]+$' 60; then
        fail "situations $* never printed ready"
        return 1
    fi
    P=$(sed -n 's/^ready \([0-9]*\)$/\1/p' "$D/target.out")
    PIDS="$P $(pidof sleep)"
}

# all_sleeping PID: every thread of PID is in state S.
all_sleeping() {
    for s in /proc/"$1"/task/*/stat; do
        [ "$(sed 's/.*) //' "$s" | cut -c1)" = S ] || return 1
    done
}

wait_blocked() {
    n=0
    while ! all_sleeping "$1"; do
        n=$((n + 1))
        [ $n -gt 600 ] && return 1
        sleep 0.05
    done
}

# tid_of PID COMM: the thread of PID named COMM.
tid_of() {
    for t in /proc/"$1"/task/*; do
        [ "$(cat "$t/comm")" = "$2" ] && basename "$t"
    done
}

# thread_of FILE COMM: the JSON of the thread named COMM in the report in FILE (from its
# `{"tid":` to the next thread's).
thread_of() {
    sed 's/{"tid":/\n&/g' "$1" | grep "^{\"tid\":[0-9]*,\"comm\":\"$2\""
}

# has TEXT NEEDLE...: prints the first NEEDLE that TEXT lacks, and fails; true if it has all.
has() {
    text=$1
    shift
    for needle in "$@"; do
        case $text in
        *"$needle"*) ;;
        *)
            echo "$needle"
            return 1
            ;;
        esac
    done
}

count() {
    printf '%s' "$1" | grep -o "$2" | wc -l
}

# trace ARGS...: qbench-trace with ARGS, its stdout in $D/out and stderr in $D/err; sets RC.
trace() {
    timeout 180 "$B/qbench-trace" "$@" >"$D/out" 2>"$D/err"
    RC=$?
    SHOW="$SHOW $D/out $D/err"
}

first_err() {
    head -n 1 "$D/err"
}

last_err() {
    tail -n 1 "$D/err"
}

# --- checks ----------------------------------------------------------------------------------

# The README's capabilities are enough, as an unprivileged user, on that user's own process:
# CAP_SYS_ADMIN and CAP_DAC_READ_SEARCH, and CAP_SYS_RESOURCE before Linux 5.11 (which charges BPF
# memory to RLIMIT_MEMLOCK). Without any one of them, the error names it.
NOBODY="--reuid=65534 --regid=65534 --clear-groups"
as_nobody() { # as_nobody CAPS NAME: qbench-trace as uid 65534 with CAPS, into $D/NAME.{out,err}
    timeout 180 "$B/setpriv" $NOBODY --inh-caps="$1" --ambient-caps="$1" \
        "$B/qbench-trace" --pid "$P" --request --timeout 5s --json >"$D/$2.out" 2>"$D/$2.err"
    RC=$?
    SHOW="$SHOW $D/$2.out $D/$2.err"
}
check_capabilities() {
    begin capabilities
    chmod 777 "$D"
    AS="$B/setpriv $NOBODY" start -- read:2 || return
    wait_blocked "$P" || { fail "threads of pid $P never all blocked"; return; }
    case $(uname -r) in
    [1-4].* | 5.[0-9].* | 5.10.*) needed="sys_admin dac_read_search sys_resource" ;;
    *) needed="sys_admin dac_read_search" ;;
    esac
    all=$(printf '+%s,' $needed)
    as_nobody "${all%,}" all
    [ $RC = 0 ] || { fail "exit $RC as uid 65534 with $all want 0: $(tail -n 1 "$D/all.err")"; return; }
    lack=$(has "$(cat "$D/all.out")" '"outcome":"quiesced"') || { fail "report lacks $lack"; return; }
    n=$(count "$(cat "$D/all.out")" '"state":"arrived"')
    [ "$n" = 3 ] || { fail "$n threads arrived, want 3"; return; }
    for missing in $needed; do
        rest=$(printf '+%s,' $needed | sed "s/+$missing,//")
        as_nobody "${rest%,}" "no-$missing"
        [ $RC = 1 ] || { fail "exit $RC without $missing, want 1"; return; }
        name=CAP_$(echo "$missing" | tr a-z A-Z)
        lack=$(has "$(cat "$D/no-$missing.err")" "$name") ||
            { fail "the error without $missing lacks $lack: $(tail -n 1 "$D/no-$missing.err")"; return; }
    done
    ok "as uid 65534 with $needed: quiesced, 3 of 3 threads; without any one of them, the error names it"
}

# Three requested updates of a program whose threads block in read, accept, a wrapped condition
# wait and a sleep: each quiesces with every thread, and matches the runtime's own report.
check_quiesced() {
    begin quiesced
    start -- read:2 accept:1 condwait:1 sleep:1 || return
    wait_blocked "$P" || { fail "threads of pid $P never all blocked"; return; }
    trace --pid "$P" --request --count 3 --timeout 5s --json
    [ $RC = 0 ] || { fail "exit $RC, want 0: $(first_err)"; return; }
    [ "$(wc -l <"$D/out")" = 3 ] || { fail "$(wc -l <"$D/out") reports, want 3"; return; }
    wait_for "$D/report" '"seq":3' 30 || { fail "the runtime reported no third update"; return; }
    SHOW="$SHOW $D/report"
    for u in 1 2 3; do
        line=$(sed -n "${u}p" "$D/out")
        seq=$(sed -n "${u}s/.*\"seq\":\([0-9]*\).*/\1/p" "$D/report")
        lack=$(has "$line" "{\"pid\":$P,\"update\":$u," '"outcome":"quiesced"' \
            '"request_source":"signal"' "\"runtime_seq\":$seq," '"lost_events":0,') ||
            { fail "report $u lacks $lack"; return; }
        n=$(count "$line" '"state":"arrived"')
        [ "$n" = 6 ] || { fail "report $u: $n threads arrived, want 6"; return; }
        rline=$(sed -n "${u}p" "$D/report")
        lack=$(has "$rline" '"outcome":"quiesced"') || { fail "runtime report $u lacks $lack"; return; }
    done
    ok "3 updates quiesced, 6 of 6 threads arrived in each, runtime_seq matches the runtime"
}

# A thread waiting for a lock that another thread holds while parked at an update point: a DNQ,
# diagnosed as lock_held_at_update_point naming both threads and the lock.
check_dnq() {
    begin dnq-lock-held
    start QBENCH_TIMEOUT_MS=3000 -- parkholder:1 heldwaiter:1 || return
    holder=$(tid_of "$P" parkholder)
    waiter=$(tid_of "$P" heldwaiter)
    # The waiter must be in its futex wait for the lock (syscall 202) before the request.
    wait_for "/proc/$P/task/$waiter/syscall" '^202 ' 30 ||
        { fail "heldwaiter ($waiter) never blocked in futex: $(cat "/proc/$P/task/$waiter/syscall")"; return; }
    trace --pid "$P" --request --timeout 300ms --json
    [ $RC = 3 ] || { fail "exit $RC, want 3 (a DNQ): $(first_err)"; return; }
    [ "$(wc -l <"$D/out")" = 1 ] || { fail "$(wc -l <"$D/out") reports, want 1"; return; }
    lack=$(has "$(cat "$D/out")" '"outcome":"dnq"') || { fail "report lacks $lack"; return; }
    wjson=$(thread_of "$D/out" heldwaiter)
    lack=$(has "$wjson" '"cause":"lock_held_at_update_point"' "\"owner_tid\":$holder," \
        '"owner_parked":true' '"futex_symbol":"held_lock"') ||
        { fail "heldwaiter's diagnosis lacks $lack"; return; }
    hint=$(printf '%s' "$wjson" | sed -n 's/.*"hint":"\([^"]*\)".*/\1/p')
    lack=$(has "$hint" held_lock "$holder" parkholder) || { fail "hint \"$hint\" lacks $lack"; return; }
    lack=$(has "$(thread_of "$D/out" parkholder)" '"state":"arrived"') ||
        { fail "parkholder lacks $lack"; return; }
    ok "heldwaiter: lock_held_at_update_point on held_lock, owner parkholder ($holder) parked; hint: $hint"
}

# A program without the runtime, observed at a function named with --point.
check_point() {
    begin point
    sleep 100000 | "$B/plain_target" points >"$D/target.out" 2>"$D/target.err" &
    SHOW="$D/target.out $D/target.err"
    wait_for "$D/target.out" '^ready$' 60 || { fail "plain_target never printed ready"; return; }
    P=$(pidof plain_target)
    PIDS="$P $(pidof sleep)"
    wait_blocked "$P" || { fail "threads of pid $P never all blocked"; return; }
    trace --pid "$P" --point update_point --request --count 2 --timeout 5s --json
    [ $RC = 0 ] || { fail "exit $RC, want 0: $(first_err)"; return; }
    [ "$(wc -l <"$D/out")" = 2 ] || { fail "$(wc -l <"$D/out") reports, want 2"; return; }
    for u in 1 2; do
        line=$(sed -n "${u}p" "$D/out")
        lack=$(has "$line" "\"update\":$u," '"outcome":"quiesced"' '"runtime_seq":null') ||
            { fail "report $u lacks $lack"; return; }
        n=$(count "$line" '"state":"arrived"')
        [ "$n" = 4 ] || { fail "report $u: $n threads arrived, want 4"; return; }
    done
    ok "2 updates at update_point quiesced, 4 of 4 threads arrived in each"
}

# --watch with metrics: an update requested by someone else is counted in the scraped metrics;
# SIGINT stops it with exit 0.
check_watch() {
    begin watch-metrics
    start -- read:2 condwait:1 || return
    wait_blocked "$P" || { fail "threads of pid $P never all blocked"; return; }
    "$B/qbench-trace" --watch --pid "$P" --metrics "127.0.0.1:$PORT" >"$D/out" 2>"$D/err" &
    W=$!
    PIDS="$PIDS $W"
    SHOW="$SHOW $D/err"
    wait_for "$D/err" "serving metrics at http://127.0.0.1:$PORT/metrics" 120 "$W" ||
        { fail "no 'serving metrics' line: $(last_err)"; return; }
    wait_for "$D/err" "watching pid $P " 120 "$W" || { fail "no 'watching pid $P' line: $(last_err)"; return; }
    kill -USR2 "$P"
    wait_for "$D/report" '"seq":1' 30 || { fail "the runtime reported no update"; return; }
    want="qbench_updates_total{pid=\"$P\",comm=\"situations\",outcome=\"quiesced\"} 1"
    n=0
    until wget -q -O "$D/metrics" "http://127.0.0.1:$PORT/metrics" && grep -qxF "$want" "$D/metrics"; do
        n=$((n + 1))
        [ $n -gt 60 ] && { SHOW="$SHOW $D/metrics"; fail "metrics never showed: $want"; return; }
        sleep 0.5
    done
    count_line="qbench_quiescence_seconds_count{pid=\"$P\",comm=\"situations\"} 1"
    grep -qxF "$count_line" "$D/metrics" || { SHOW="$SHOW $D/metrics"; fail "metrics lack: $count_line"; return; }
    kill -INT "$W"
    (sleep 120 && kill -9 "$W") 2>/dev/null &
    watchdog=$!
    wait "$W"
    rc=$?
    kill "$watchdog" 2>/dev/null
    [ $rc = 0 ] || { fail "exit $rc after SIGINT, want 0"; return; }
    ok "scraped: $want; SIGINT: exit 0"
}

# --trace-out and --svg on a DNQ with a thread stuck in read(2).
check_pictures() {
    begin pictures
    start QBENCH_TIMEOUT_MS=2000 -- read:1 stuckread:1 || return
    wait_blocked "$P" || { fail "threads of pid $P never all blocked"; return; }
    trace --pid "$P" --request --timeout 300ms --trace-out "$D/update.json" --svg "$D/update.svg"
    [ $RC = 3 ] || { fail "exit $RC, want 3 (a DNQ): $(first_err)"; return; }
    # The trace is pretty-printed: its text without layout whitespace is what is compared.
    json=$(tr -d ' \n\t' <"$D/update.json" 2>/dev/null)
    case $json in
    '{"'*'}') ;;
    *)
        SHOW="$SHOW $D/update.json"
        fail "update.json is not a JSON object"
        return
        ;;
    esac
    # As the host's test: the update is a DNQ, stuckread has its track, and its last read is
    # still blocked when the update ends.
    lack=$(has "$json" '"traceEvents":[{' '"name":"update1:DNQ"' \
        '"args":{"name":"stuckread"},"name":"thread_name"' '"still_blocked"' \
        '"producer":"qbench-trace"') ||
        { SHOW="$SHOW $D/update.json"; fail "update.json lacks $lack"; return; }
    svg=$(cat "$D/update.svg" 2>/dev/null)
    lack=$(has "$svg" '<svg' '</svg>' 'DID NOT QUIESCE' stuckread) ||
        { SHOW="$SHOW $D/update.svg"; fail "update.svg lacks $lack"; return; }
    ok "update.json ($(wc -c <"$D/update.json") bytes) and update.svg ($(wc -c <"$D/update.svg") bytes) written"
}

check_capabilities
check_quiesced
check_dnq
check_point
check_watch
check_pictures
echo "QBENCH-DONE"
# Let the serial port drain before the machine goes.
sleep 1
poweroff -f
