#!/bin/bash
# sigexec lab: run at power-off by sigexec-lab-collect.service, ordered to
# stop after sigexec.service, so the alert file is complete (sigexec
# flushes its sinks on SIGTERM): the alerts raised while the host was
# stopping go to the host on the second serial port.
stty -F /dev/ttyS1 raw -echo
exec 3>/dev/ttyS1
printf '%s\n' "SIGEXEC-LAB-SHUTDOWN sigexec=$(systemctl is-active sigexec) kesl=$(systemctl is-active kesl)" >&3
printf '%s\n' "SIGEXEC-LAB-BEGIN shutdown-alerts" >&3
cat /var/log/sigexec/alerts.jsonl >&3
printf '%s\n' "SIGEXEC-LAB-END shutdown-alerts" >&3
# sigexec's log of this boot, both lives and the stop (probe warnings).
journalctl -u sigexec.service -o cat --no-pager > /run/sigexec-journal.txt
printf '%s\n' "SIGEXEC-LAB-BEGIN shutdown-journal" >&3
cat /run/sigexec-journal.txt >&3
printf '%s\n' "SIGEXEC-LAB-END shutdown-journal" >&3
printf '%s\n' "SIGEXEC-LAB-SHUTDOWN-DONE" >&3
