"""Generates the large differential-test corpus (>= 20,000 events).

Usage: python3 gen_scale.py RULES_DIR > scale-events.jsonl

For every rule, events are built from the rule's own values (every value
of every list, not just the first) and then mutated: case changes,
prefixes and suffixes, near misses (a character dropped or changed), and
the edge characters a wildcard may stand for ('' for '*', separators, one
or two characters for '?'). Searches are combined the way conditions use
them (all selections together, with and without filters). Realistic benign
events (common commands under common parents) make up the rest.

Deterministic: a fixed seed, same rules, same output. Values stay ASCII
so that SQLite's ASCII-only case folding (an oracle limit) does not blur
the comparison; the rules' own non-ASCII characters, if any, are kept as
they are.

The expected matches for these events come from the reference matcher
(pySigma + SQLite, shared/oracle/sigma-oracle), never from our code; see
README.md next to this file.
"""
import glob
import json
import os
import random
import sys

import yaml

RNG = random.Random(20261203)
DEFAULT_IMAGE = "/usr/bin/true"
STAR_FILLS = ["", "x", "/", " ", "-", "abc/def", "X Y"]
QMARK_FILLS = ["a", "/", " ", "-", "Z"]


def fill(value, anchor, star=None, qmark=None):
    """A concrete string for one Sigma string value (wildcards filled)."""
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
            out.append(RNG.choice(STAR_FILLS) if star is None else star)
        elif c == "?":
            out.append(RNG.choice(QMARK_FILLS) if qmark is None else qmark)
        else:
            out.append(c)
        i += 1
    s = "".join(out)
    if anchor == "contains":
        return RNG.choice(["", "a ", "/usr/", "x"]) + s + RNG.choice(["", " z", "/", "9"])
    if anchor == "endswith":
        return RNG.choice(["", "/opt/a", "x"]) + s
    if anchor == "startswith":
        return s + RNG.choice(["", " z", "/x", "0"])
    return s


def flip_case(s):
    return "".join(c.upper() if RNG.random() < 0.5 else c.lower() for c in s)


def near_miss(s):
    if not s:
        return "x"
    i = RNG.randrange(len(s))
    kind = RNG.randrange(4)
    if kind == 0:
        return s[:i] + s[i + 1 :]
    if kind == 1:
        return s[:i] + ("q" if s[i] != "q" else "r") + s[i + 1 :]
    if kind == 2:
        return s[1:]
    return s[:-1]


def mutate(s):
    """One random mutation of a field value."""
    kind = RNG.randrange(9)
    if kind == 0:
        return s.upper()
    if kind == 1:
        return flip_case(s)
    if kind == 2:
        return RNG.choice(["x", "/", " ", "sudo "]) + s
    if kind == 3:
        return s + RNG.choice(["x", "/", " ", " --help"])
    if kind in (4, 5):
        return near_miss(s)
    if kind == 6:
        return s.replace(" ", "  ", 1)
    if kind == 7:
        return s.replace("/", "\\", 1)
    return s


def scalar_values(values):
    if not isinstance(values, list):
        values = [values]
    return [v for v in values if v is not None and not isinstance(v, (dict, list))]


def item_fields(key, values, pick):
    """Field -> text satisfying `key: values` with the value `pick` chooses."""
    parts = str(key).split("|")
    field, mods = parts[0], parts[1:]
    if not field or "re" in mods or "exists" in mods or "fieldref" in mods:
        return None
    if any(m in mods for m in ("base64", "base64offset", "cidr", "lt", "lte", "gt", "gte", "wide", "utf16le", "utf16be", "utf16")):
        return None
    anchor = next((m for m in mods if m in ("contains", "startswith", "endswith")), None)
    values = scalar_values(values)
    if not values:
        return None
    if "all" in mods:
        if anchor == "contains":
            vals = list(values)
            RNG.shuffle(vals)
            return field, " ".join(fill(v, "contains") for v in vals)
        return field, fill(values[0], anchor)
    return field, fill(pick(values), anchor)


def search_fields(search, pick):
    if isinstance(search, list):
        maps = [s for s in search if isinstance(s, dict)]
        if maps:
            search = pick(maps)
        else:
            # A keyword list: put one keyword into the command line.
            words = scalar_values(search)
            if not words:
                return {}
            return {"CommandLine": "cmd " + fill(pick(words), None) + " end"}
    if not isinstance(search, dict):
        return {}
    out = {}
    for key, values in search.items():
        got = item_fields(key, values, pick)
        if got:
            field, text = got
            out[field] = out[field] + " " + text if field in out else text
    return out


def events_for(rule, per_rule):
    detection = rule.get("detection") or {}
    searches = {k: v for k, v in detection.items() if k not in ("condition", "timeframe")}
    names = list(searches)
    if not names:
        return []
    events = []
    attempts = 0
    while len(events) < per_rule and attempts < per_rule * 4:
        attempts += 1
        mode = RNG.randrange(6)
        ev = {"Image": DEFAULT_IMAGE}
        if mode == 0:
            # One search alone, random values.
            ev.update(search_fields(searches[RNG.choice(names)], RNG.choice))
        elif mode in (1, 2, 3):
            # Every non-filter search together (what most conditions need).
            for n in names:
                if not n.startswith("filter"):
                    ev.update(search_fields(searches[n], RNG.choice))
        else:
            # Everything, filters included.
            for n in names:
                ev.update(search_fields(searches[n], RNG.choice))
        if len(ev) == 1 and ev["Image"] == DEFAULT_IMAGE and mode != 0:
            continue
        if mode in (2, 3, 5):
            field = RNG.choice(sorted(ev))
            ev[field] = mutate(ev[field])
        if RNG.random() < 0.3:
            ev.update(benign_context())
            for n in names:
                if not n.startswith("filter") and RNG.random() < 0.7:
                    ev.update(search_fields(searches[n], RNG.choice))
        events.append(ev)
    return events


IMAGES = [
    "/usr/bin/ls", "/usr/bin/git", "/usr/bin/python3.11", "/usr/bin/grep", "/usr/bin/cat",
    "/usr/bin/ssh", "/usr/sbin/sshd", "/usr/bin/cargo", "/usr/bin/dpkg", "/usr/bin/apt-get",
    "/usr/bin/systemctl", "/usr/lib/systemd/systemd-tmpfiles", "/usr/bin/bash", "/usr/bin/dash",
    "/usr/bin/sed", "/usr/bin/awk", "/usr/bin/find", "/usr/bin/tar", "/usr/bin/curl",
    "/usr/bin/wget", "/usr/bin/vim.basic", "/usr/bin/less", "/usr/bin/sudo", "/usr/bin/id",
]
ARGS = [
    "-la", "--color=auto", "status --porcelain", "-rn TODO src/", "/etc/hostname", "-V",
    "--version", "build --release", "-l", "restart nginx", "list-units --type=service",
    "https://example.com/index.html -o /tmp/i.html", "-xzf backup.tar.gz", "-i s/a/b/ f.txt",
    "'{print $1}' /var/log/syslog", "/home/alice -name '*.rs'", "install -y jq", "-u",
]
PARENTS = [
    ("/usr/bin/bash", "-bash"), ("/usr/bin/zsh", "zsh"), ("/usr/lib/systemd/systemd", "/sbin/init splash"),
    ("/usr/sbin/cron", "/usr/sbin/cron -f"), ("/usr/bin/tmux", "tmux new -s work"),
    ("/usr/sbin/sshd", "sshd: alice@pts/0"), ("/usr/bin/python3.11", "python3 manage.py runserver"),
]
USERS = ["alice", "bob", "root", "www-data", "postgres", "1000"]
DIRS = ["/home/alice", "/", "/tmp", "/var/www/html", "/root", "/srv/app"]


def benign_context():
    pimage, pcmd = RNG.choice(PARENTS)
    return {
        "ParentImage": pimage,
        "ParentCommandLine": pcmd,
        "User": RNG.choice(USERS),
        "CurrentDirectory": RNG.choice(DIRS),
    }


def benign_event():
    image = RNG.choice(IMAGES)
    name = image.rsplit("/", 1)[-1]
    ev = {"Image": image, "CommandLine": name + " " + RNG.choice(ARGS)}
    ev.update(benign_context())
    if RNG.random() < 0.5:
        ev["ProcessId"] = RNG.randrange(1, 4194304)
        ev["ParentProcessId"] = RNG.randrange(1, 4194304)
        ev["LogonId"] = RNG.choice([0, 1000, 1001, 33])
    return ev


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_scale.py RULES_DIR")
    rules = []
    for path in sorted(glob.glob(os.path.join(sys.argv[1], "**", "*.yml"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            rules.extend(r for r in yaml.safe_load_all(f) if isinstance(r, dict))
    seen = set()
    out = []

    def add(ev):
        key = json.dumps(ev, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(ev)

    for rule in rules:
        for ev in events_for(rule, 120):
            add(ev)
    while len(out) < 25000:
        add(benign_event())
    for ev in out:
        print(json.dumps(ev, ensure_ascii=False, sort_keys=True))


if __name__ == "__main__":
    main()
