"""A uWSGI ini's attached daemons -> a Conversion (see README, "From supervisord
and uWSGI").

Each attach-daemon, attach-control-daemon, smart-attach-daemon,
smart-attach-daemon2 and attach-daemon2 line of `[uwsgi]` becomes a process
(keys repeat: one line, one daemon); uWSGI itself becomes a process `uwsgi`
running `uwsgi --ini FILE` when the file configures more than daemons.
uWSGI runs a daemon's command with /bin/sh -c, so commands go over as
written. Its placeholders: %(option), %d %p %s %n %e %c %x and %% are
expanded here; $(VAR) becomes ${VAR} in a command (the shell reads it at
start, as uWSGI read its environment at load) and elsewhere is expanded now
or listed; the rest (%h %k %u ..., @(file)) are listed.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Mapping

from pidone import signames
from pidone.config import command as commands
from pidone.config import values
from pidone.config.values import BadValue
from pidone.convert.ini import MAX_LINE_CHARS, BadInput, Entry, read_uwsgi
from pidone.convert.model import (
    MAX_PROCESSES,
    Conversion,
    Process,
    procfile_name,
    shown,
    validate,
)

DAEMONS = (
    "attach-daemon",
    "attach-control-daemon",
    "smart-attach-daemon",
    "smart-attach-daemon2",
    "attach-daemon2",
)
LEGION_DAEMONS = tuple(f"legion-{kind}" for kind in DAEMONS)
# What the daemons take from [uwsgi] itself (the master spawns them as it
# runs: in its directory, as its user, with its environment).
SHARED = ("master", "env", "uid", "gid", "chdir", "daemons-honour-stdin")
# attach-daemon2's keys, as uWSGI's option parser names them.
DAEMON2_KEYS = {
    "command": "command", "cmd": "command", "exec": "command", "freq": "freq",
    "pidfile": "pidfile", "control": "control", "daemonize": "daemonize",
    "daemon": "daemonize", "touch": "touch", "stopsignal": "stopsignal",
    "stop_signal": "stopsignal", "reloadsignal": "reloadsignal",
    "reload_signal": "reloadsignal", "stdin": "stdin", "uid": "uid", "gid": "gid",
    "ns_pid": "ns_pid", "chdir": "chdir", "max_throttle": "max_throttle",
    "notifypid": "notifypid", "legion": "legion",
}  # fmt: skip
_FALSY = ("0", "false", "no", "off")
# attach-daemon2 keys uWSGI reads with atoi, and what their 0 meant.
_NUMBERS = {
    "uid": "user switch",
    "gid": "group switch",
    "stopsignal": "signal (kill with 0 sends none)",
    "reloadsignal": "reload signal",
}
# Keys that make no app of their own: legion daemons, if/for blocks.
_NOT_APP = ("legion-", "if-")
_BLOCKS = ("endif", "for", "endfor")
_FILE_MAGIC = "dpsnecx"  # expanded here: they name the ini file itself
_PLACEHOLDER = re.compile(r"%\(([^)]{0,100})\)|%(.)|\$\(([^)]{0,100})\)|@\(([^)]{0,200})\)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def convert(text: str, path: str, environ: Mapping[str, str]) -> Conversion:
    """`path`: absolute (the %d, %p ... it names); `environ`: what $(VAR)
    means where pidone cannot expand it later."""
    sections = read_uwsgi(text, path)
    found = [s for s in sections if s.name == "uwsgi"]
    if not found:
        raise BadInput(
            f"{path}: no [uwsgi] section: nothing to import "
            "(is it a uWSGI ini? a supervisord config has [program:NAME] sections)"
        )
    conv = Conversion("uWSGI", path)
    for section in sections:
        if section.name not in ("uwsgi", "") and section.entries:
            conv.note(
                f"{path}:{section.line}",
                f"[{section.name}]",
                "not read: only [uwsgi] is (uwsgi --ini FILE:SECTION reads another one; "
                "import a copy with it renamed [uwsgi])",
            )
    entries = [entry for section in found for entry in section.entries]
    _Reader(conv, path, entries, environ).run()
    if not conv.processes:
        raise BadInput(
            f"{path}: [uwsgi] has no attach-daemon, smart-attach-daemon, "
            "smart-attach-daemon2 or attach-daemon2 line, and nothing else to run: "
            "nothing to import"
        )
    validate(conv)
    return conv


class _Reader:
    def __init__(
        self, conv: Conversion, path: str, entries: list[Entry], environ: Mapping[str, str]
    ) -> None:
        self.conv = conv
        self.path = path
        self.entries = entries
        self.environ = environ
        self.taken: set[str] = {"uwsgi"}
        self.magic = _file_magic(path)
        self.by_key: dict[str, list[Entry]] = {}  # in line order
        for entry in entries:
            self.by_key.setdefault(entry.key, []).append(entry)
        self.lines_by_key = {k: [e.line for e in found] for k, found in self.by_key.items()}

    def where(self, entry: Entry) -> str:
        return f"{self.path}:{entry.line}"

    def run(self) -> None:
        shared: dict[str, Entry] = {}
        env: dict[str, str] = {}
        app = False
        for entry in self.entries:
            if entry.key == "env":
                # pidone expands environment values itself: $(VAR) -> ${VAR}, $ -> $$
                text = self._expand(entry, entry.value, deferred=True, dollars=True)
                key, eq, value = text.partition("=")
                if eq and _NAME.fullmatch(key):
                    env[key] = value
                else:
                    self.conv.note(self.where(entry), "env", f"{shown(entry.value)} is not K=V")
            elif entry.key in SHARED:
                shared[entry.key] = entry
            elif entry.key not in (*DAEMONS, *_BLOCKS) and not entry.key.startswith(_NOT_APP):
                app = True
        if app:
            self._uwsgi()
        block: Entry | None = None  # the if-*/for line a daemon is inside of
        for entry in self.entries:
            if entry.key.startswith("if-") or entry.key == "for":
                block = entry
            elif entry.key in ("endif", "endfor"):
                block = None
            if entry.key in DAEMONS:
                if len(self.conv.processes) >= MAX_PROCESSES:
                    raise BadInput(f"{self.where(entry)}: more than {MAX_PROCESSES} daemons")
                self._daemon(entry, shared, env)
                if block is not None:
                    self.conv.note(
                        self.where(entry),
                        f"{entry.key} inside {block.key} = {shown(block.value)} "
                        f"(line {block.line})",
                        "imported once, as if the condition held (pidone import evaluates no "
                        "uWSGI if/for blocks): keep it or delete it",
                    )
            elif entry.key in LEGION_DAEMONS:
                self.conv.note(
                    self.where(entry),
                    f"{entry.key} = {shown(entry.value)}",
                    "not translated: a legion daemon runs only on the legion's lord node; "
                    "pidone has no legions yet (issue 17)",
                )
            elif entry.key in ("daemonize", "daemonize2"):
                self.conv.note(
                    self.where(entry),
                    entry.key,
                    "uWSGI would leave pidone's supervision: remove it from the ini",
                )

    def _uwsgi(self) -> None:
        keys = {entry.key: entry for entry in self.entries}
        hook = " ".join(e.value for e in self.entries if e.key.startswith("hook-master-start"))
        graceful = "die-on-term" in keys or "gracefully_kill_them_all" in hook
        first = self.entries[0]
        process = Process("uwsgi", "uwsgi", self.where(first), f"uwsgi --ini {_quoted(self.path)}")
        process.keys["ready"] = "notify"
        process.keys["stop_signal"] = "SIGTERM" if graceful else "SIGINT"
        self.conv.processes.append(process)
        self.conv.note(
            self.where(first),
            "uwsgi",
            "uWSGI itself is process uwsgi (uwsgi --ini FILE); delete the daemon lines "
            "from FILE, or uWSGI starts each daemon a second time"
            + (
                ""
                if graceful
                else "; stopped with SIGINT (uWSGI 2.0 takes SIGTERM as a reload): add "
                "die-on-term, or hook-master-start = unix_signal:15 gracefully_kill_them_all "
                'and stop_signal = "SIGTERM"'
            ),
        )

    # --- one daemon -------------------------------------------------------------------

    def _daemon(self, entry: Entry, shared: dict[str, Entry], env: dict[str, str]) -> None:
        kind = entry.key
        keys: dict[str, object] = {}
        text = entry.value
        options: dict[str, str] = {}
        if kind == "attach-daemon2":
            options = self._keyval(entry)
            if "command" not in options:
                raise BadInput(
                    f"{self.where(entry)}: attach-daemon2 = {shown(text)}: no command= "
                    "(uWSGI refuses it too); add cmd=..."
                )
            command = options["command"]
        elif kind.startswith("smart-"):
            pidfile, space, command = text.partition(" ")
            if not space or not command.strip():
                raise BadInput(
                    f"{self.where(entry)}: {kind} = {shown(text)}: needs PIDFILE COMMAND "
                    "(uWSGI refuses it too)"
                )
            pidfile, comma, freq = pidfile.partition(",")
            options["pidfile"] = self._now(Entry(kind, pidfile, entry.line), f"{kind} PIDFILE")
            if comma:
                options["freq"] = freq
            if kind == "smart-attach-daemon2":
                options["daemonize"] = "1"
        else:
            command = text
            if kind == "attach-control-daemon":
                options["control"] = "1"
        command = self._command(entry, command.strip())
        if not command:
            raise BadInput(f"{self.where(entry)}: {kind} has no command")
        wanted = _program_word(command)
        name = procfile_name(wanted, self.taken)
        process = Process(name, wanted, self.where(entry), command)
        try:
            shell_stays = commands.parse(command).shell_stays
        except ValueError as exc:
            raise BadInput(f"{self.where(entry)}: {kind}: {exc}") from None
        if shell_stays:
            # /bin/sh stays its main pid and passes no signal on; uWSGI, too,
            # signalled only that pid, but killed the group in the end.
            keys["stop_target"] = "group"
            self.conv.note(
                self.where(entry),
                f"{kind} = {shown(text)}",
                'a list or pipeline: the shell stays its main pid, so stop_target = "group" '
                "(the stop signal to all of it); write exec before the program to avoid it",
            )
        if name != wanted:
            self.conv.renamed.append((self.where(entry), wanted, name))
        directory = options.get("chdir")
        if directory is None and "chdir" in shared:
            directory = self._now(shared["chdir"], "chdir")
        if directory:
            keys["directory"] = directory
        if env:
            keys["environment"] = dict(env)
        user = options.get("uid") or (self._now(shared["uid"], "uid") if "uid" in shared else "")
        group = options.get("gid") or (self._now(shared["gid"], "gid") if "gid" in shared else "")
        for key, value in (("user", user), ("group", group)):
            if value:
                self._identity(keys, key, value, entry)
        self._options(entry, options, keys, directory, shared)
        process.keys = keys
        self.conv.processes.append(process)

    def _options(
        self,
        entry: Entry,
        options: dict[str, str],
        keys: dict[str, object],
        directory: str | None,
        shared: dict[str, Entry],
    ) -> None:
        what = f"{entry.key} ({shown(entry.value)})"
        pidfile = options.get("pidfile")
        if pidfile and "daemonize" in options:
            self.conv.note(
                self.where(entry),
                what,
                f"uWSGI daemonized it and wrote {pidfile} itself; pidone runs it in the "
                "foreground and knows its pid, so nothing writes that pidfile now",
            )
        elif pidfile:
            if not pidfile.startswith("/"):
                base = directory if directory and directory.startswith("/") else None
                base = base or os.path.dirname(self.path)
                self.conv.note(
                    self.where(entry),
                    what,
                    f"pidfile {pidfile} is relative (to uWSGI's directory): written relative "
                    f"to {base}",
                )
                pidfile = os.path.normpath(os.path.join(base, pidfile))
            keys["pidfile"] = pidfile
        if "control" in options:
            keys["control"] = True
            self._falsy(entry, what, "control", options["control"])
        for key, pidone_key in (("stopsignal", "stop_signal"), ("reloadsignal", "reload_signal")):
            if key in options:
                try:
                    number = values.signal_number(options[key])
                except BadValue as exc:
                    raise BadInput(f"{self.where(entry)}: {key}={options[key]}: {exc}") from None
                keys[pidone_key] = signames.signal_name(number)
        if "touch" in options:
            base = directory if directory and directory.startswith("/") else None
            base = base or os.path.dirname(self.path)
            paths = [p for p in options["touch"].split(";") if p]
            if any(not p.startswith("/") for p in paths):
                self.conv.note(
                    self.where(entry),
                    f"{what} touch",
                    f"relative paths (to uWSGI's directory) written relative to {base}",
                )
            keys["touch"] = [os.path.normpath(os.path.join(base, p)) for p in paths]
        stdin = "stdin" in options or "daemons-honour-stdin" in shared
        if stdin:
            keys["stdin"] = True
        if "ns_pid" in options and "pidfile" in keys:
            # Its launcher is the namespace's init: the daemon forking away from
            # it dies when it exits (in uWSGI too). pidone refuses the pair.
            self.conv.note(
                self.where(entry),
                f"{what} ns_pid",
                "not translated: a daemon that forks away (pidfile) dies with its PID "
                "namespace's init, its launcher, in uWSGI too; run it in the foreground, "
                "without pidfile, to have pid_namespace = true",
            )
        elif "ns_pid" in options:
            keys["pid_namespace"] = True
            self._falsy(entry, what, "ns_pid", options["ns_pid"])
        if "stdin" in options:
            self._falsy(entry, what, "stdin", options["stdin"])
        untranslated = {
            "freq": "pidone looks at a pidfile itself (every 0.1 s, 1 s once refused)",
            "max_throttle": "pidone's restart backoff is [pidone] backoff_max, for all processes",
            "notifypid": "pidone has no such notification",
            "legion": "pidone has no legions yet (issue 17)",
        }
        for key, why in untranslated.items():
            if key in options:
                self.conv.note(self.where(entry), f"{what} {key}={options[key]}", why)

    def _falsy(self, entry: Entry, what: str, key: str, value: str) -> None:
        if value.strip().lower() in _FALSY:
            self.conv.note(
                self.where(entry),
                f"{what} {key}={value}",
                "uWSGI turns it on whatever the value, and so does pidone import",
            )

    def _keyval(self, entry: Entry) -> dict[str, str]:
        """attach-daemon2's k=v,k=v (a backslash keeps the next character)."""
        options: dict[str, str] = {}
        for item in _split_escaped(entry.value, ","):
            key, _, value = item.partition("=")
            key = key.strip()
            if not key:
                continue
            if key not in DAEMON2_KEYS:
                self.conv.note(
                    self.where(entry),
                    f"attach-daemon2 {key}",
                    "not an attach-daemon2 key uWSGI knows; ignored",
                )
                continue
            name = DAEMON2_KEYS[key]
            options[name] = (
                value
                if name == "command"
                else self._now(Entry(key, value, entry.line), f"attach-daemon2 {key}")
            )
            if name in _NUMBERS and not options[name].strip().isdigit():
                self.conv.note(
                    self.where(entry),
                    f"attach-daemon2 {key}={value}",
                    "uWSGI reads it as a number (atoi), so a name there meant 0: no "
                    f"{_NUMBERS[name]}; written as the name says",
                )
        return options

    def _identity(self, keys: dict[str, object], key: str, value: str, entry: Entry) -> None:
        try:
            values.identity(value)
        except BadValue as exc:
            raise BadInput(f"{self.where(entry)}: {key} {shown(value)}: {exc}") from None
        keys[key] = value

    # --- placeholders -------------------------------------------------------------------

    def _option(self, name: str, line: int) -> str | None:
        """%(name): the option's value as uWSGI has it at that line (the last
        one before it), else its first value after."""
        found = self.by_key.get(name)
        if not found:
            return None
        at = bisect.bisect_left(self.lines_by_key[name], line)
        return (found[at - 1] if at else found[0]).value

    def _expand(
        self, entry: Entry, text: str, *, deferred: bool, dollars: bool = False, depth: int = 0
    ) -> str:
        """uWSGI's placeholders in `text`; $(VAR) as ${VAR} when `deferred` (a
        command: the shell expands it), else from the environment now.
        `dollars`: a literal $ becomes $$ (for what pidone expands itself)."""
        out: list[str] = []
        at = 0

        def literal(part: str) -> str:
            return part.replace("$", "$$") if dollars else part

        for match in _PLACEHOLDER.finditer(text):
            out.append(literal(text[at : match.start()]))
            at = match.end()
            option, magic, env, at_file = match.groups()
            if option is not None:
                value = self._option(option, entry.line) if depth < 8 else None
                if value is None:
                    self._unexpanded(entry, match[0], f"no option {option} in [uwsgi]")
                    out.append(match[0])
                else:
                    more = self._expand(
                        entry, value, deferred=deferred, dollars=dollars, depth=depth + 1
                    )
                    out.append(more)
            elif magic is not None:
                if magic == "%":
                    out.append("%")
                elif magic in _FILE_MAGIC:
                    out.append(literal(self.magic[magic]))
                else:
                    self._unexpanded(entry, match[0], "a fact of the machine uWSGI runs on")
                    out.append(match[0])
            elif env is not None:
                if deferred and _NAME.fullmatch(env):
                    out.append("${" + env + "}")
                elif deferred:
                    self._unexpanded(entry, match[0], "names no environment variable")
                    out.append(literal(match[0]))
                elif env in self.environ:
                    out.append(literal(self.environ[env]))
                    self.conv.note(
                        self.where(entry),
                        f"{entry.key} {match[0]}",
                        f"expanded at import time to {shown(self.environ[env])}",
                    )
                else:
                    raise _Unset(env)
            else:
                self._unexpanded(entry, match[0], f"the contents of {at_file}, read by uWSGI")
                out.append(match[0])
            if sum(map(len, out)) > MAX_LINE_CHARS:
                raise BadInput(f"{self.where(entry)}: {entry.key}: expands past 128 KiB")
        out.append(literal(text[at:]))
        return "".join(out)

    def _unexpanded(self, entry: Entry, placeholder: str, why: str) -> None:
        self.conv.note(self.where(entry), f"{entry.key} {placeholder}", f"left as written: {why}")

    def _command(self, entry: Entry, text: str) -> str:
        return self._expand(entry, text, deferred=True)

    def _now(self, entry: Entry, what: str) -> str:
        try:
            return self._expand(entry, entry.value, deferred=False)
        except _Unset as exc:
            raise BadInput(
                f"{self.where(entry)}: {what} = {shown(entry.value)}: $({exc}) is not set "
                "here, and pidone does not expand this value; set it, or write the value"
            ) from None


class _Unset(Exception):
    pass


def _file_magic(path: str) -> dict[str, str]:
    base = os.path.basename(path)
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    directory = os.path.dirname(path)
    return {
        "d": directory.rstrip("/") + "/",
        "p": path,
        "s": base,
        "n": stem,
        "e": ext,
        "c": os.path.basename(directory),
        "x": base,
    }


_WRAPPERS = frozenset({"exec", "env", "nohup", "nice", "setsid"})


def _program_word(command: str) -> str:
    """The daemon's name: the basename of its program word (of the last
    command of a `cd DIR && prog` list, past exec, env and VAR=value)."""
    last = re.split(r"&&|;", command)[-1]
    for word in last.split():
        if word not in _WRAPPERS and not re.match(r"[A-Za-z_][A-Za-z0-9_]*=", word):
            return os.path.basename(word.strip("'\"")) or "daemon"
    return "daemon"


def _quoted(path: str) -> str:
    import shlex

    return shlex.quote(path)


def _split_escaped(text: str, sep: str) -> list[str]:
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts
