#!/bin/bash
# sigexec lab: the test that sigexec-lab.service runs in the systemd guest
# (`cargo xtask vm-test --systemd`). It only acts and reports; the host
# decides. Reports go to the second serial port (/dev/ttyS1), one per line:
#   SIGEXEC-LAB-STEP <name> rc=.. begin=.. end=.. active=.. pid=.. restarts=..
#   SIGEXEC-LAB-BEGIN <file> ... SIGEXEC-LAB-END <file>
#   SIGEXEC-LAB-RESULT rc=<n>     (n: setup commands that failed)
# Each step runs in its own working directory (/run/lab/<name>), which the
# alerts carry as CurrentDirectory, and in a time window (begin, end) that
# ends SETTLE seconds after the command returned: the fold window (250 ms)
# and the exit records (collected every second) have passed by then.
set -u
SETTLE=3
stty -F /dev/ttyS1 raw -echo
exec 3>/dev/ttyS1
say() { printf '%s\n' "$*" >&3; printf '%s\n' "$*"; }
now() { date -u +%Y-%m-%dT%H:%M:%S.%NZ; }
failed=0
setup() {
    "$@" || { say "SIGEXEC-LAB-SETUP-FAILED rc=$? $*"; failed=$((failed + 1)); }
}
show() { systemctl show -p "$1" --value sigexec; }
step() {
    local name=$1 begin end rc
    shift
    mkdir -p "/run/lab/$name"
    begin=$(now)
    (cd "/run/lab/$name" && "$@")
    rc=$?
    sleep "$SETTLE"
    end=$(now)
    say "SIGEXEC-LAB-STEP $name rc=$rc begin=$begin end=$end" \
        "active=$(systemctl is-active sigexec) pid=$(show MainPID) restarts=$(show NRestarts)" \
        "kesl=$(systemctl is-active kesl)"
}
dump() {
    say "SIGEXEC-LAB-BEGIN $1"
    cat "$2" >&3
    say "SIGEXEC-LAB-END $1"
}

say "SIGEXEC-LAB-KERNEL $(uname -r)"
say "SIGEXEC-LAB-SYSTEMD $(systemctl --version | head -n1)"

# The dummy Kaspersky: daemon, init script (the unit's ExecStop, and a copy
# in /etc/init.d, which Debian's init-functions redirect to systemctl: a
# symlink would not be, as its target is not under /etc/init.d), unit.
setup install -d /opt/kaspersky/kesl/libexec /var/opt/kaspersky/kesl/install-current/etc/init.d
setup cp /usr/bin/sleep /opt/kaspersky/kesl/libexec/kesl
setup install -m 0755 /lab/kesl.init /var/opt/kaspersky/kesl/install-current/etc/init.d/kesl
setup install -m 0755 /lab/kesl.init /etc/init.d/kesl
setup install -m 0644 /lab/kesl.service /etc/systemd/system/kesl.service
setup systemctl daemon-reload
setup systemctl enable --now kesl.service

# sigexec from its package: the postinst enables and starts it.
setup dpkg -i /lab/sigexec.deb
say "SIGEXEC-LAB-INSTALLED active=$(systemctl is-active sigexec)"
# Alerts to the journal (stdout) and to a JSON-lines file.
# The fold window is 1 s instead of 250 ms: under TCG PID 1's ExecStop
# comes 180 to 420 ms after systemctl's exec (tens of ms on hardware).
cat > /etc/sigexec/config.yaml <<'CONFIG'
alerts:
  fold_ms: 1000
sinks:
  - type: stdout
  - type: file
    path: /var/log/sigexec/alerts.jsonl
CONFIG
setup systemctl restart sigexec
say "SIGEXEC-LAB-READY active=$(systemctl is-active sigexec) pid=$(show MainPID) kesl=$(systemctl is-active kesl)"

step systemctl-stop systemctl stop kesl
setup systemctl start kesl
step initd-stop /etc/init.d/kesl stop
setup systemctl start kesl
step service-stop service kesl stop
setup systemctl start kesl
step sigexec-restart systemctl restart sigexec
step systemctl-stop-after-restart systemctl stop kesl
setup systemctl start kesl
step systemctl-status systemctl status kesl

say "SIGEXEC-LAB-BEFORE-POWEROFF kesl=$(systemctl is-active kesl) sigexec=$(systemctl is-active sigexec)" \
    "system=$(systemctl is-system-running)"
dump alerts /var/log/sigexec/alerts.jsonl
journalctl -u sigexec.service -o cat --no-pager > /run/lab/journal.txt
dump journal /run/lab/journal.txt
say "SIGEXEC-LAB-RESULT rc=$failed"
exit "$failed"
