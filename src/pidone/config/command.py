"""A command string -> the argv to exec, with a shell only when it needs one.

    uwsgi --ini uwsgi.ini           ["uwsgi", "--ini", "uwsgi.ini"]
    celery worker 2>&1 >log         ["/bin/sh", "-c", "exec celery worker 2>&1 >log"]
    PORT=80 ./serve *.conf          ["/bin/sh", "-c", "PORT=80 exec ./serve *.conf"]
    redis-server | tee log          ["/bin/sh", "-c", "redis-server | tee log"]

Without shell syntax the words are split with shlex and exec'd directly. A
single simple command that needs the shell (redirections, globs, `$(...)`,
backticks, `~`, a leading VAR=value) gets `exec` so that the shell replaces
itself with the program: the pid pidone signals is the program's. Pipelines,
lists (`&&`, `||`, `;`, `&`, newlines), subshells and compound commands
(`if`, `while`, `{ ...; }`) cannot be exec'd: there the shell stays the main
pid (`shell_stays`), so the stop signal goes to the shell, which does not
pass it on; such a process is only stopped for sure by the SIGKILL to its
group after its stop timeout. Use `stop_target = "group"` for those.

pidone never puts a value into the command text: a `$` is shell syntax, so
the command goes to the shell as written and the shell expands it from the
child's environment, by its own rules (`${PORT:-8000}`, `$$`, a value split
into plain words, never parsed as a command), as foreman and honcho do.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

SHELL = "/bin/sh"

# Words that start a compound command: the shell has to stay for them.
_COMPOUND = frozenset({"if", "for", "while", "until", "case", "{", "!", "[[", "function", "time"})
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_CLOSE_IT = "close it, or escape it with a backslash"


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    uses_shell: bool
    # True for pipelines and lists: /bin/sh, not the program, is the main pid.
    shell_stays: bool = False
    # The program the main pid runs in the end, when the text says it plainly
    # (argv[0], or the word a shell execs); "" when only the shell knows it
    # (a list, or a program word with `$`, quotes or a glob in it).
    program: str = field(default="", compare=False)  # follows from argv


def parse(text: str) -> Command:
    """Choose direct exec or a shell for the command as written.

    Raises ValueError for an empty command, an unclosed quote or `$(`, or an
    unclosed `${`.
    """
    text = text.strip()
    if not text:
        raise ValueError("the command is empty; write the program to run")
    scan = _Scan(text)
    if not scan.needs_shell:
        argv = tuple(shlex.split(text))
        return Command(argv, uses_shell=False, program=argv[0])
    if scan.is_list:
        return Command((SHELL, "-c", text), uses_shell=True, shell_stays=True)
    script = _with_exec(text, scan.word_starts)
    return Command((SHELL, "-c", script), uses_shell=True, program=_exec_word(script))


def _with_exec(text: str, word_starts: list[int]) -> str:
    """Insert `exec` before the program word, after any leading VAR=value words
    (`exec VAR=1 prog` would try to run a program called "VAR=1")."""
    for start in word_starts:
        word = text[start:]
        if word.startswith("exec") and (len(word) == 4 or word[4] in " \t"):
            return text  # already there
        if not _ASSIGNMENT.match(word):
            return f"{text[:start]}exec {word}"
    return text


_PLAIN_WORD = re.compile(r"[A-Za-z0-9_./+,:@%-]+")


def _exec_word(script: str) -> str:
    """The program word after the leading `exec` that _with_exec made sure of
    (past any VAR=value words), if it is plain text; else ""."""
    words = script.split()
    for i, word in enumerate(words[:-1]):
        if word == "exec":
            program = words[i + 1]
            return program if _PLAIN_WORD.fullmatch(program) else ""
        if not _ASSIGNMENT.match(word):
            return ""
    return ""


class _Scan:
    """One pass over the command, tracking quotes as /bin/sh would."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.needs_shell = False
        self.is_list = False
        self.word_starts: list[int] = []
        self._run()
        first = text[self.word_starts[0] :].split(None, 1)[0] if self.word_starts else ""
        if first in _COMPOUND:
            self.needs_shell = self.is_list = True
        elif first == "exec" or _ASSIGNMENT.match(first):
            self.needs_shell = True
        if self.word_starts and all(_ASSIGNMENT.match(text[s:]) for s in self.word_starts):
            self.is_list = True  # only assignments: there is no program to exec

    def _run(self) -> None:
        text = self.text
        i = 0
        at_word_start = True
        while i < len(text):
            char = text[i]
            if char in " \t":
                at_word_start = True
                i += 1
                continue
            if at_word_start:
                self.word_starts.append(i)
                if char in "~#":  # tilde expansion, comment
                    self.needs_shell = True
            at_word_start = False
            if char == "\\":
                if i + 1 == len(text):
                    raise ValueError("the command ends with a backslash; remove it")
                # shlex unescapes like sh, except for a line continuation.
                if text[i + 1] == "\n":
                    self.needs_shell = True
                i += 2
            elif char == "'":
                i = _after_quote(text, i)
            elif char == '"':
                i = self._double_quoted(i)
            elif char == "$" or char == "`":
                self.needs_shell = True
                i = _after_substitution(text, i)
            elif char in "<>":
                self.needs_shell = True
                i += 2 if text[i + 1 : i + 2] in ("&", "|", ">", "<") else 1
                at_word_start = True
            elif char in "|&;()\n":
                self.needs_shell = self.is_list = True
                i += 1
                at_word_start = True
            else:
                if char in "*?[":
                    self.needs_shell = True
                i += 1

    def _double_quoted(self, i: int) -> int:
        """Index after the double-quoted string at i; `$` and "`" work inside."""
        text = self.text
        i += 1
        while i < len(text):
            char = text[i]
            if char == '"':
                return i + 1
            if char == "\\":
                # shlex keeps the backslash of \$, \` and \<newline>; sh drops it.
                if text[i + 1 : i + 2] in ("$", "`", "\n"):
                    self.needs_shell = True
                i += 2
            elif char in "$`":
                self.needs_shell = True
                i = _after_substitution(text, i)
            else:
                i += 1
        raise ValueError(f'a double quote (") is never closed; {_CLOSE_IT}')


def _after_quote(text: str, i: int) -> int:
    end = text.find("'", i + 1)
    if end < 0:
        raise ValueError(f"a single quote (') is never closed; {_CLOSE_IT}")
    return end + 1


def _after_substitution(text: str, i: int) -> int:
    """Index after the `$...` or backtick construct at i (its inside is the
    shell's business: a `|` in `$(a | b)` does not make a pipeline)."""
    if text[i] == "`":
        end = text.find("`", i + 1)
        if end < 0:
            raise ValueError(f"a backtick (`) is never closed; {_CLOSE_IT}")
        return end + 1
    following = text[i + 1 : i + 2]
    if following == "(":
        return _after_group(text, i + 1, "(", ")")
    if following == "{":
        return _after_group(text, i + 1, "{", "}")
    return i + 1


def _after_group(text: str, i: int, opening: str, closing: str) -> int:
    depth = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "'":
            i = _after_quote(text, i)
            continue
        if char == '"':
            i = _after_double_quote(text, i)
            continue
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f'"${opening}" is never closed by "{closing}"; add the "{closing}"')


def _after_double_quote(text: str, i: int) -> int:
    i += 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        else:
            i += 1
    raise ValueError(f'a double quote (") is never closed; {_CLOSE_IT}')


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPECIAL_PARAMETERS = frozenset("$?#!@*-0123456789")
# ${NAME<op>...} forms that give the shell something when NAME is unset.
_HANDLED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?[-=?+]")
# Ways a command sets a variable itself: NAME=..., for NAME in, read NAME, getopts ... NAME.
_SETS = re.compile(
    r"(?:^|[\s;&|(`{])(?:(?:export|local|readonly)\s+)?([A-Za-z_][A-Za-z0-9_]*)="
    r"|\bfor\s+([A-Za-z_][A-Za-z0-9_]*)"
    r"|\b(?:read|getopts)((?:\s+(?:-\S+|[A-Za-z_][A-Za-z0-9_]*))+)"
)


def undefined(text: str, known: set[str]) -> set[str]:
    """The variables a command uses as $NAME or ${NAME} (or ${#NAME},
    ${NAME%...}), outside single quotes, that are not in `known` and that the
    command does not set itself: the shell would quietly make them empty.
    A heuristic for `pidone check`'s warnings, never a reason to refuse."""
    sets = known | _set_names(text)
    used: set[str] = set()
    i = 0
    in_double = False
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
        elif char == "'" and not in_double:
            end = text.find("'", i + 1)
            i = len(text) if end < 0 else end + 1
        elif char == '"':
            in_double = not in_double
            i += 1
        elif char == "$":
            if text[i + 1 : i + 2] in _SPECIAL_PARAMETERS:
                i += 2  # $$HOME is the shell's pid, then "HOME"
                continue
            if text.startswith("${", i):
                if _HANDLED.match(text, i):
                    i = _after_dollar_brace(text, i)
                    continue
                name = _NAME.match(text, i + (3 if text.startswith("${#", i) else 2))
            else:
                name = _NAME.match(text, i + 1)
            if name is not None:
                used.add(name[0])
                i = name.end()
            else:
                i += 1
        else:
            i += 1
    return used - sets


def _set_names(text: str) -> set[str]:
    names: set[str] = set()
    for found in _SETS.finditer(text):
        if found[3] is not None:
            names.update(word for word in found[3].split() if not word.startswith("-"))
        else:
            names.add(found[1] or found[2])
    return names


def _after_dollar_brace(text: str, i: int) -> int:
    try:
        return _after_group(text, i + 1, "{", "}")
    except ValueError:
        return len(text)
