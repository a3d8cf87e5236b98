"""A supervisord config -> a Conversion (see README, "From supervisord and uWSGI").

Each `[program:x]` becomes one process (or `numprocs` of them, named by
`process_name`); its keys map as the table in the README says, and every
key or section with no pidone meaning becomes a Note with its file:line.
supervisord runs a command without a shell (shlex words, exec'd), so the
command written to the Procfile is those words, quoted where pidone would
otherwise hand them to /bin/sh.
"""

from __future__ import annotations

import glob
import itertools
import os
import re
import shlex
from collections.abc import Callable, Mapping

from pidone import signames
from pidone.config import command as commands
from pidone.config import values
from pidone.config.values import BadValue
from pidone.convert.ini import (
    MAX_INPUT_BYTES,
    MAX_LINE_CHARS,
    BadInput,
    Entry,
    Section,
    merge_sections,
    read_supervisord,
)
from pidone.convert.model import (
    MAX_PROCESSES,
    Conversion,
    Process,
    procfile_name,
    shown,
    validate,
)

_PROGRAM_KEYS = """
    command process_name numprocs numprocs_start priority autostart startsecs startretries
    autorestart exitcodes stopsignal stopwaitsecs stopasgroup killasgroup user redirect_stderr
    stdout_logfile stdout_logfile_maxbytes stdout_logfile_backups stdout_capture_maxbytes
    stdout_events_enabled stdout_syslog stderr_logfile stderr_logfile_maxbytes
    stderr_logfile_backups stderr_capture_maxbytes stderr_events_enabled stderr_syslog
    logfile logfile_maxbytes logfile_backups capture_maxbytes
    environment directory umask serverurl
"""
PROGRAM_KEYS = frozenset(_PROGRAM_KEYS.split())
LOG_KEYS = frozenset(k for k in PROGRAM_KEYS if k.startswith(("std", "log", "capture", "redir")))
SERVER_SECTIONS = {
    "unix_http_server": "pidone's control socket (`pidone ctl`) replaces supervisord's server",
    "inet_http_server": "pidone's control socket (`pidone ctl`) replaces supervisord's server",
    "supervisorctl": "`pidone ctl` finds pidone's control socket itself",
}
MAX_NUMPROCS = 100  # per program (supervisord sets no bound; pidone's files are small)
DEFAULT_PRIORITY = 999
DEFAULT_STARTRETRIES = 3
DEFAULT_STARTSECS = 1  # pidone's settle_time default is the same second

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
# supervisord's %(name)s expansions: Python's %-format, width bounded here.
_FORMAT = re.compile(
    r"%(?:\((?P<key>[^)]{0,100})\)(?P<spec>[#0 +-]{0,5}\d{0,3}(?:\.\d{0,3})?[diouxXeEfFgGcrsa])|%)"
)
# Where %(ENV_X)s goes in a command or environment value: the shell (or
# pidone's own expansion) reads X at start, as supervisord read it at load.
_MARK, _END = "\ue000", "\ue001"
_MARKED = re.compile(f"{_MARK}([^{_END}]*){_END}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# [include] files = ...: followed as supervisord does (only the main file's
# [include]; globs relative to its directory, each one's matches sorted),
# within these bounds.
MAX_INCLUDE_FILES = 64
MAX_INCLUDE_BYTES = 4 * MAX_INPUT_BYTES  # all the files read, the main one too
# (absolute glob pattern, most files it may match) -> [(path, text)] of its
# matches, sorted; raises BadInput ("path: what"). The OS side: commands.py.
IncludeReader = Callable[[str, int], list[tuple[str, str]]]


class _Unresolved(Exception):
    """An %(ENV_X)s where only a value known now can go (directory, user...)."""


def convert(
    text: str,
    path: str,
    environ: Mapping[str, str],
    hostname: str = "",
    include: IncludeReader | None = None,
) -> Conversion:
    """`path`: absolute (its directory is %(here)s); `environ`: what
    %(ENV_X)s means where pidone cannot expand it later; `include`: reads
    the files [include] names (None: they are listed as not followed)."""
    _check_marks(text, path)
    sections = read_supervisord(text, path)
    conv = Conversion("supervisord", path)
    reader = _Reader(conv, path, environ, hostname)
    read = 0
    if include is not None:
        read = reader.include(sections, include, len(text.encode()))
    reader.run(sections)
    if not conv.processes:
        section = next((s for s in sections if s.name == "include"), None)
        files = section.last().get("files") if section else None
        hint = (
            f"nor in the {read} files its [include] names"
            if files and include is not None
            else f"its [include] names the files that have them ({shown(files.value)}): "
            "import each of those"
            if files
            else "is it a supervisord config? a uWSGI ini has a [uwsgi] section"
        )
        raise BadInput(f"{path}: no [program:NAME] section: nothing to import ({hint})")
    validate(conv)
    return conv


def _check_marks(text: str, path: str) -> None:
    if _MARK in text or _END in text:
        raise BadInput(f"{path}: holds U+E000 or U+E001, which pidone import uses itself")


class _Reader:
    def __init__(
        self, conv: Conversion, path: str, environ: Mapping[str, str], hostname: str
    ) -> None:
        self.conv = conv
        self.path = path
        self.environ = environ
        self.hostname = hostname
        self.here = os.path.dirname(path)
        self.taken: set[str] = set()
        self.global_env: dict[str, str] = {}
        self.global_umask: str | None = None
        self.levels: list[tuple[int, list[str], Entry | None]] = []  # priority, names, line
        self.followed = False  # the [include] was read (no "not followed" note)

    def where(self, at: Entry | Section) -> str:
        return f"{at.file or self.path}:{at.line}"

    # --- [include] ----------------------------------------------------------------

    def include(self, sections: list[Section], read: IncludeReader, size: int) -> int:
        """Follow the main file's [include] files = (space-separated globs,
        relative to its directory; %(here)s, %(host_node_name)s and
        %(ENV_X)s expanded now): each file's sections merged into `sections`
        in order. Bounded: MAX_INCLUDE_FILES files, MAX_INCLUDE_BYTES in all.
        An [include] in an included file is not followed (nor by supervisord:
        only its main file's is). The number of files read."""
        section = next((s for s in sections if s.name == "include"), None)
        if section is None:
            return 0
        entry = section.last().get("files")
        if entry is None:
            raise BadInput(
                f"{self.where(section)}: [include] has no files = (supervisord refuses it"
                " too); add files = conf.d/*.conf, or remove the section"
            )
        self.followed = True
        base = {"here": self.here, "host_node_name": self.hostname}
        try:
            value = self._expand(entry, base, self._now)
        except _Unresolved as exc:
            raise BadInput(
                f"{self.where(entry)}: [include] files = {shown(entry.value)}: %(ENV_{exc})s"
                " is not set here; set it for pidone import, or write the path"
            ) from None
        count = 0
        for pattern in value.split():
            full = os.path.join(glob.escape(self.here), pattern)
            try:
                found = read(full, MAX_INCLUDE_FILES - count)
            except BadInput as exc:
                raise BadInput(f"{self.where(entry)}: [include] files: {exc}") from None
            if not found:
                self.conv.note(
                    self.where(entry),
                    f"[include] files: {pattern}",
                    "matches no file (supervisord warns and goes on)",
                )
            for path, text in found:
                count += 1
                size += len(text.encode())
                if size > MAX_INCLUDE_BYTES:
                    raise BadInput(
                        f"{self.where(entry)}: [include] files: more than"
                        f" {MAX_INCLUDE_BYTES // 1024} KiB in all with {path}; import it in parts"
                    )
                _check_marks(text, path)
                more = read_supervisord(text, path)
                for nested in [s for s in more if s.name == "include"]:
                    more.remove(nested)
                    self.conv.note(
                        self.where(nested),
                        "[include]",
                        "not followed: supervisord follows only its main file's [include];"
                        f" list these files in {self.where(entry)}",
                    )
                merge_sections(sections, more)
        return count

    # --- sections -----------------------------------------------------------------

    def run(self, sections: list[Section]) -> None:
        groups = self._groups(sections)
        for section in sections:
            if section.name == "supervisord":
                self._supervisord(section)
        for section in sections:
            kind, _, name = section.name.partition(":")
            if kind == "program" and name:
                self._program(section, name, groups.get(name, name))
            elif kind in ("fcgi-program", "eventlistener"):
                why = (
                    "pidone has no FastCGI socket sharing of this kind; run the program as a "
                    "[program:] with its own socket, or use a [socket.NAME] table"
                    if kind == "fcgi-program"
                    else "pidone has no supervisord events to listen to"
                )
                self.conv.note(self.where(section), f"[{section.name}]", f"not translated: {why}")
            elif kind == "group":
                programs = section.last().get("programs")
                listed = programs.value if programs else ""
                self.conv.note(
                    self.where(section),
                    f"[{section.name}]",
                    f"pidone has no groups: its programs ({listed}) are plain processes; "
                    "name them together, like `pidone ctl restart a b`",
                )
            elif kind == "include":  # followed: its files' sections are read
                if self.followed:
                    continue
                files = section.last().get("files")
                listed = shown(files.value) if files else "''"
                self.conv.note(
                    self.where(section),
                    "[include]",
                    f"files = {listed} not followed: run "
                    "`pidone import` on each included file and merge the results",
                )
            elif section.name in SERVER_SECTIONS:
                self.conv.note(
                    self.where(section), f"[{section.name}]", SERVER_SECTIONS[section.name]
                )
            elif kind == "rpcinterface":
                self.conv.note(
                    self.where(section), f"[{section.name}]", "pidone has no XML-RPC interface"
                )
            elif section.name != "supervisord" and kind != "program":
                self.conv.note(
                    self.where(section),
                    f"[{section.name}]",
                    "not a supervisord section pidone import knows; ignored",
                )
        self._order()

    def _groups(self, sections: list[Section]) -> dict[str, str]:
        """program name -> its [group:x] name (for %(group_name)s)."""
        found: dict[str, str] = {}
        for section in sections:
            kind, _, name = section.name.partition(":")
            entry = section.last().get("programs") if kind == "group" else None
            if entry is not None:
                for program in entry.value.split(","):
                    found.setdefault(program.strip(), name)
        return found

    def _supervisord(self, section: Section) -> None:
        left: list[str] = []
        base = {"here": self.here, "host_node_name": self.hostname}
        for entry in section.entries:
            if entry.key == "environment":
                text = self._expand(entry, base, self._marked)
                self.global_env.update(self._environment(entry, text))
            elif entry.key == "umask":
                self.global_umask = self._umask(entry, entry.value)
            elif entry.key == "user":
                self.conv.note(
                    self.where(entry),
                    f"[supervisord] user = {entry.value}",
                    "run pidone itself as that user (systemd's User=, or `su` in the unit); "
                    "pidone runs as whoever starts it",
                )
            else:
                left.append(entry.key)
        if left:
            self.conv.note(
                self.where(section),
                f"[supervisord] {', '.join(dict.fromkeys(left))}",
                "supervisord's own settings: pidone logs to its stderr, writes no pidfile "
                "and never daemonizes; its settings are the [pidone] table",
            )

    # --- one program --------------------------------------------------------------

    def _program(self, section: Section, program: str, group: str) -> None:
        raw = section.last()
        title = f"[{section.name}]"
        if "command" not in raw:
            raise BadInput(
                f"{self.where(section)}: {title} has no command "
                "(supervisord refuses it too); add command = ..."
            )
        for key, entry in raw.items():
            if key not in PROGRAM_KEYS:
                self.conv.note(
                    self.where(entry), f"{title} {key}", "not a supervisord key; ignored"
                )

        def expansions(num: int, numprocs: int) -> dict[str, object]:
            return {
                "here": self.here,
                "program_name": program,
                "group_name": group,
                "host_node_name": self.hostname,
                "process_num": num,
                "numprocs": numprocs,
            }

        keys = self._resolve(raw, expansions(0, 1), title)
        numprocs = self._integer(keys.get("numprocs"), 1, 1, MAX_NUMPROCS)
        start = self._integer(keys.get("numprocs_start"), 0, 0, 1_000_000)
        name_entry = raw.get("process_name")
        name_format = name_entry.value if name_entry else "%(program_name)s"
        if numprocs > 1 and "process_num" not in name_format:
            raise BadInput(
                f"{self.where(name_entry or section)}: {title} numprocs = {numprocs} needs a"
                " process_name with %(process_num)s in it, like"
                " %(program_name)s_%(process_num)02d (supervisord refuses it too)"
            )
        if len(self.conv.processes) + numprocs > MAX_PROCESSES:
            raise BadInput(
                f"{self.where(section)}: {title}: more than {MAX_PROCESSES} processes "
                "in all; pidone import stops there"
            )
        autostart = self._boolean(keys.get("autostart"), True)
        logs = [k for k in raw if k in LOG_KEYS]
        if logs:
            self.conv.note(
                self.where(raw[logs[0]]),
                f"{title} {', '.join(logs)}",
                "not translated: pidone relays each line to its own stdout and stderr with "
                "the process's name in front (send them to a file with your container "
                "runtime or systemd's journal)",
            )
        if "serverurl" in raw:
            self.conv.note(
                self.where(raw["serverurl"]),
                f"{title} serverurl",
                "pidone sets no SUPERVISOR_SERVER_URL; a program that calls supervisord "
                "back must use `pidone ctl`",
            )
        names: list[str] = []
        for num in range(start, start + numprocs):
            base = expansions(num, numprocs)
            wanted = self._expand(name_entry, base, self._now) if name_entry else program
            name = procfile_name(wanted, self.taken)
            if name != wanted:
                self.conv.renamed.append((self.where((name_entry or section)), wanted, name))
            process = Process(name, wanted, self.where(section), "")
            self._fill(process, raw, self._resolve(raw, base, title), base, title, autostart)
            self.conv.processes.append(process)
            names.append(name)
        if autostart:
            priority = self._integer(keys.get("priority"), DEFAULT_PRIORITY, -(10**9), 10**9)
            self.levels.append((priority, names, keys.get("priority")))

    def _resolve(
        self, raw: dict[str, Entry], base: Mapping[str, object], title: str
    ) -> dict[str, Entry]:
        """Every value but command and environment (which keep %(ENV_X)s for
        later) expanded as supervisord 4 does; an %(ENV_X)s of a variable not
        set here leaves the key out, listed."""
        keys: dict[str, Entry] = {}
        for key, entry in raw.items():
            if key in ("command", "environment", "process_name"):
                keys[key] = entry
                continue
            if key not in PROGRAM_KEYS:
                continue  # listed; supervisord does not read it either
            try:
                text = self._expand(entry, base, self._now)
            except _Unresolved as exc:
                self.conv.note(
                    self.where(entry),
                    f"{title} {key} = {shown(entry.value)}",
                    f"not translated: ${exc} is not set here, and pidone reads {key} as "
                    "written: write its value in pidone.toml",
                )
                continue
            if "%(ENV_" in entry.value:
                self.conv.note(
                    self.where(entry),
                    f"{title} {key} = {shown(entry.value)}",
                    f"expanded at import time to {shown(text)} (pidone reads {key} as written)",
                )
            keys[key] = Entry(key, text, entry.line, entry.file)
        return keys

    def _fill(
        self,
        process: Process,
        raw: dict[str, Entry],
        keys: dict[str, Entry],
        base: dict[str, object],
        title: str,
        autostart: bool,
    ) -> None:
        put = process.keys
        process.command = self._command(raw["command"], base, title)
        if "directory" in keys:
            put["directory"] = keys["directory"].value
        if "user" in keys:
            self._checked(put, "user", keys["user"].value, values.identity, keys["user"], title)
        env = dict(self.global_env)
        if "environment" in raw:
            entry = raw["environment"]
            env.update(self._environment(entry, self._expand(entry, base, self._marked)))
        if env:
            put["environment"] = env
        umask = self._umask(keys["umask"], keys["umask"].value) if "umask" in keys else None
        umask = umask or self.global_umask
        if umask is not None:
            put["umask"] = umask
        if not autostart:
            put["autostart"] = False
        put["restart"] = self._restart(keys, title)
        if "startretries" in keys:  # supervisord gives up after startretries + 1 failed starts
            retries = self._integer(keys["startretries"], DEFAULT_STARTRETRIES, 0, 10**6)
            put["fatal_after"] = retries + 1
        if "exitcodes" in keys:  # the "expected" exits: not restarted under "unexpected"
            codes = self._exit_codes(keys["exitcodes"])
            if codes != [0]:
                put["success_exit_codes"] = codes
        if "startsecs" in keys:
            secs = self._integer(keys["startsecs"], DEFAULT_STARTSECS, 0, int(values.MAX_SECONDS))
            if secs != DEFAULT_STARTSECS:
                put["ready"] = f"settle:{secs}"
        if "stopsignal" in keys:
            entry = keys["stopsignal"]
            try:
                put["stop_signal"] = signames.signal_name(values.signal_number(entry.value))
            except BadValue as exc:
                raise BadInput(f"{self.where(entry)}: {title} stopsignal: {exc}") from None
        if "stopwaitsecs" in keys:
            put["stop_timeout"] = self._integer(
                keys["stopwaitsecs"], 10, 0, int(values.MAX_SECONDS)
            )
        as_group = self._boolean(keys.get("stopasgroup"), False)
        if as_group:
            put["stop_target"] = "group"
        if "killasgroup" in keys and not self._boolean(keys["killasgroup"], False):
            self.conv.note(
                self.where(keys["killasgroup"]),
                f"{title} killasgroup = false",
                "pidone's SIGKILL at the stop timeout always goes to the whole process group",
            )

    def _restart(self, keys: dict[str, Entry], title: str) -> str:
        entry = keys.get("autorestart")
        word = entry.value.lower() if entry else "unexpected"
        if word in _TRUE:
            return "always"
        if word in _FALSE:
            return "never"
        if word != "unexpected":
            assert entry is not None
            raise BadInput(
                f"{self.where(entry)}: {title} autorestart = {shown(entry.value)}: "
                "supervisord takes true, false or unexpected"
            )
        return "on-failure"

    # --- start order and FATAL ------------------------------------------------------

    def _order(self) -> None:
        """priority: each level starts after the level below it is ready (pidone's
        only start order, stricter than supervisord's spawn order) and stops before
        it; restart_dependents = false keeps supervisord's independent restarts."""
        by_level: dict[int, list[str]] = {}
        lines: dict[int, Entry | None] = {}
        for priority, names, entry in self.levels:
            by_level.setdefault(priority, []).extend(names)
            lines.setdefault(priority, entry)
        levels = sorted(by_level)
        by_name = {p.name: p for p in self.conv.processes}
        for below, level in itertools.pairwise(levels):
            for name in by_level[level]:
                by_name[name].keys["after"] = list(by_level[below])
                by_name[name].keys["restart_dependents"] = False
            entry = lines[level]
            self.conv.note(
                self.where(entry) if entry else self.conv.processes[0].where,
                f"priority {level} ({', '.join(by_level[level])})",
                f"translated as after = {by_level[below]}: started once those are ready (up "
                "their startsecs), where supervisord only spawns them first; stopped before "
                "them, as supervisord does; restart_dependents = false (supervisord restarts "
                "each program alone)",
            )

    def _exit_codes(self, entry: Entry) -> list[int]:
        codes = []
        for part in entry.value.split(","):
            one = Entry("exitcodes", part.strip(), entry.line, entry.file)
            code = self._integer(one, 0, 0, 255)
            if code not in codes:
                codes.append(code)
        return codes

    # --- values -------------------------------------------------------------------

    def _now(self, name: str) -> str:
        """%(ENV_X)s where pidone expands nothing later: the value at import."""
        if name not in self.environ:
            raise _Unresolved(name)
        return self.environ[name]

    @staticmethod
    def _marked(name: str) -> str:
        return f"{_MARK}{name}{_END}"

    def _expand(self, entry: Entry, base: Mapping[str, object], env: Callable[[str], str]) -> str:
        """supervisord's %(name)s expansion of one value; a bad one is bad input,
        as supervisord refuses it."""
        out: list[str] = []
        text = entry.value
        at = 0
        if "here" in base and entry.file and entry.file != self.path:
            # supervisord's %(here)s in an included file: that file's directory
            base = {**base, "here": os.path.dirname(entry.file)}
        while (i := text.find("%", at)) >= 0:
            out.append(text[at:i])
            match = _FORMAT.match(text, i)
            if match is None:
                raise BadInput(
                    f"{self.where(entry)}: {entry.key} = {shown(text)}: a % that is no "
                    "%(name)s expansion; write %% for a percent sign"
                )
            at = match.end()
            key = match["key"]
            if key is None:
                out.append("%")
                continue
            value: object
            if key.startswith("ENV_"):
                if not _NAME.fullmatch(key[4:]):
                    raise BadInput(f"{self.where(entry)}: {entry.key}: %({key})s names no variable")
                value = env(key[4:])
            elif key in base:
                value = base[key]
            else:
                known = ", ".join(sorted([*base, "ENV_X"]))
                raise BadInput(
                    f"{self.where(entry)}: {entry.key} = {shown(text)}: %({key})s is no "
                    f"supervisord expansion here (known: {known})"
                )
            try:
                out.append(("%" + match["spec"]) % (value,))
            except (TypeError, ValueError) as exc:
                raise BadInput(f"{self.where(entry)}: {entry.key}: {exc}") from None
            if sum(map(len, out)) > MAX_LINE_CHARS:
                raise BadInput(f"{self.where(entry)}: {entry.key}: expands past 128 KiB")
        out.append(text[at:])
        return "".join(out)

    def _command(self, entry: Entry, base: Mapping[str, object], title: str) -> str:
        text = self._expand(entry, base, self._marked)
        try:
            words = shlex.split(text)
        except ValueError as exc:
            raise BadInput(
                f"{self.where(entry)}: {title} command = {shown(entry.value)}: {exc} "
                "(supervisord refuses it too)"
            ) from None
        if not words:
            raise BadInput(f"{self.where(entry)}: {title} command is empty")
        if any(_MARK in word for word in words):
            return " ".join(_shell_word(word) for word in words)
        flat = " ".join(text.split())
        try:
            parsed = commands.parse(flat)
        except ValueError:
            parsed = None
        if parsed is not None and not parsed.uses_shell and parsed.argv == tuple(words):
            return flat
        if parsed is not None and parsed.uses_shell:
            self.conv.note(
                self.where(entry),
                f"{title} command",
                "supervisord runs a command without a shell, so what looks like shell syntax "
                "in it is plain arguments: written quoted, to mean the same",
            )
        return shlex.join(words)

    def _environment(self, entry: Entry, text: str) -> dict[str, str]:
        """supervisord's KEY="val",KEY2=val: commas split pairs outside quotes,
        quotes around a value go. %(ENV_X)s becomes ${X} (pidone expands
        environment values from its own environment); a literal $ is $$."""
        pairs: dict[str, str] = {}
        for item in _split_unquoted(text.replace("\n", " "), ","):
            if not item.strip():
                continue
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or not _NAME.fullmatch(key):
                raise BadInput(
                    f"{self.where(entry)}: environment: {shown(item)} is not KEY=value "
                    '(supervisord\'s form: KEY="value",KEY2=value2)'
                )
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            value = value.replace("$", "$$")
            pairs[key] = _MARKED.sub(lambda m: "${" + m[1] + "}", value)
        return pairs

    def _umask(self, entry: Entry, text: str) -> str | None:
        try:
            mask = values.octal(0o777, "022")(text.strip())
        except BadValue as exc:
            raise BadInput(f"{self.where(entry)}: umask = {shown(text)}: {exc}") from None
        return f"{mask:04o}"

    def _checked(
        self,
        put: dict[str, object],
        key: str,
        text: str,
        parse: Callable[[str], object],
        entry: Entry,
        title: str,
    ) -> None:
        try:
            parse(text)
        except BadValue as exc:
            raise BadInput(f"{self.where(entry)}: {title} {key} = {shown(text)}: {exc}") from None
        put[key] = text

    def _integer(self, entry: Entry | None, default: int, low: int, high: int) -> int:
        if entry is None:
            return default
        text = entry.value.strip()
        if not re.fullmatch(r"-?[0-9]{1,12}", text) or not low <= int(text) <= high:
            raise BadInput(
                f"{self.where(entry)}: {entry.key} = {shown(entry.value)}: "
                f"not a whole number from {low} to {high}"
            )
        return int(text)

    def _boolean(self, entry: Entry | None, default: bool) -> bool:
        if entry is None:
            return default
        word = entry.value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise BadInput(
            f"{self.where(entry)}: {entry.key} = {shown(entry.value)}: "
            "supervisord takes true or false (yes/no, on/off, 1/0)"
        )


def _split_unquoted(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quote = ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == sep:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _shell_word(word: str) -> str:
    """A word with %(ENV_X)s marks as one double-quoted shell word: "${X}" is
    expanded, not split; everything else stays literal."""
    if _MARK not in word:
        return shlex.quote(word)
    out, at = ['"'], 0
    for match in _MARKED.finditer(word):
        out.append(_in_double_quotes(word[at : match.start()]))
        out.append("${" + match[1] + "}")
        at = match.end()
    out.append(_in_double_quotes(word[at:]))
    return "".join(out) + '"'


def _in_double_quotes(text: str) -> str:
    return re.sub(r'([\\$`"])', r"\\\1", text)
