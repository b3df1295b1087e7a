"""Option families: one repeatable ``--NAME KEY=VALUE[,KEY=VALUE...]`` option for a group of
settings that belong together, instead of a flag each (the pattern of ``--rollout`` and
``--decoder-param``; ultralytics' ``key=value`` arguments and Docker's ``--mount`` do the same).

A family declares its keys once (``Key``: a click type that checks and converts the value, a
metavar and a help line). The option may be given several times; pairs inside one value are
separated by commas, and a comma only separates where a ``key=`` follows it, so a value may hold
commas itself (``mean=127.5,127.5,127.5,std=58``, ``classes=person,dog``). A key given twice is
refused, an unknown key is refused with the family's keys, a bad value says which key and why:
one line, exit 2, before any model loads. The command receives one dict of the keys given, their
values converted; defaults stay with the library record the command fills from it.

A flag that moved answers with its new spelling (exit 2) only on the commands that have the
option that replaced it: a family carries the old flags that became its keys
(``family(..., renamed=..., moved=...)``), a plain option its own (``option(..., moved=...)``),
and a command the flags that left it altogether (``Command.renamed``). ``Command``, the group's
command class, finds them through its parameters.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

# family key -> "--family key", for errors the library raises about a parameter of that name
KEY_FLAGS: dict[str, str] = {}

_SPLIT = re.compile(r",(?=\s*[A-Za-z][A-Za-z0-9_-]*=)")


@dataclass(frozen=True)
class Key:
    """One key of a family: ``type`` checks and converts its text (a click type, or a function
    of the text that raises ``ValueError``/``click.BadParameter`` with the reason)."""

    help: str  # "" leaves the key out of the option's help (the help then says where it is)
    type: Any = click.STRING
    metavar: str = "VALUE"
    multiple: bool = False  # the key may be given more than once: its value is then a tuple
    param: str | None = None  # the library parameter it fills, when not the key's own name


def split_pairs(text: str) -> list[tuple[str, str]]:
    """``"a=1,b=x,y"`` as ``[("a", "1"), ("b", "x,y")]``; a part without ``=`` is an error."""
    pairs = []
    for part in _SPLIT.split(text):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{part.strip()!r} is not KEY=VALUE")
        pairs.append((key.strip().replace("-", "_"), value.strip()))
    return pairs


def parse_family(flag: str, keys: Mapping[str, Key], texts: tuple[str, ...] | list[str],
                 ctx: click.Context | None = None, words: Mapping[str, str] | None = None,
                 uses: Collection[str] | None = None) -> dict[str, Any]:
    """The values of ``flag`` (each ``KEY=VALUE[,KEY=VALUE...]``, or one of ``words``, which
    stands for its pairs) as {parameter: converted value} (a key's ``param``, else the key).
    ``uses``: the keys this command takes (None: all); another key of the family is refused,
    naming the command."""
    taken = _taken(keys, uses)
    found: dict[str, Any] = {}
    for text in texts:
        text = (words or {}).get(text.strip(), text)
        try:
            pairs = split_pairs(text)
        except click.BadParameter as exc:
            raise click.BadParameter(f"{exc.message}; {flag} takes {form(taken)}",
                                     ctx, param_hint=flag) from None
        convert_pairs(flag, keys, pairs, ctx, uses, found)
    return found


def convert_pairs(flag: str, keys: Mapping[str, Key], pairs: list[tuple[str, str]],
                  ctx: click.Context | None = None, uses: Collection[str] | None = None,
                  found: dict[str, Any] | None = None, takes: str | None = None
                  ) -> dict[str, Any]:
    """Check and convert ``flag``'s (key, value) pairs into ``found`` (returned): {parameter:
    converted value}. An unknown key is refused with the keys (``takes``, else ``form``), a key
    outside ``uses`` naming the command, a key given twice, and a bad value by
    ``KeyValueError`` (which names the key)."""
    taken = _taken(keys, uses)
    found = {} if found is None else found
    for key, value in pairs:
        if key not in keys:
            raise click.BadParameter(f"unknown key {key!r}; {flag} takes "
                                     f"{takes or form(taken)}", ctx, param_hint=flag)
        if key not in taken:
            command = ctx.info_name if ctx is not None else "this command"
            raise click.BadParameter(f"{command} does not use {key}; it takes "
                                     f"{', '.join(taken)}", ctx, param_hint=flag)
        converted = _convert(flag, key, keys[key], value, ctx)
        name = keys[key].param or key
        if keys[key].multiple:
            found[name] = found.get(name, ()) + (converted,)
        elif name in found:
            raise click.BadParameter(f"{key} is given twice", ctx, param_hint=flag)
        else:
            found[name] = converted
    return found


def _taken(keys: Mapping[str, Key], uses: Collection[str] | None) -> Mapping[str, Key]:
    return keys if uses is None else {k: spec for k, spec in keys.items() if k in uses}


class KeyValueError(click.BadParameter):
    """A key's value refused: ``key`` names the key, the message says why."""

    def __init__(self, message: str, ctx: click.Context | None, flag: str, key: str) -> None:
        super().__init__(message, ctx, param_hint=f"{flag} {key}")
        self.key = key


def _convert(flag: str, key: str, spec: Key, value: str, ctx: click.Context | None) -> Any:
    try:
        if isinstance(spec.type, click.ParamType):
            return spec.type.convert(value, None, ctx)
        return spec.type(value)
    except click.BadParameter as exc:
        raise KeyValueError(exc.message, ctx, flag, key) from None
    except ValueError as exc:
        raise KeyValueError(str(exc) or f"{value!r} is not valid", ctx, flag, key) from None


def form(keys: Mapping[str, Key], described: bool = False) -> str:
    """The keys, for an error line: ``a=N, b=X`` (and how many more the help points to);
    ``described``: each with its help, ``a=N (what it is)``."""
    hidden = sum(not spec.help for spec in keys.values())
    return ", ".join(f"{k}={spec.metavar}" + (f" ({spec.help})" if described else "")
                     for k, spec in keys.items() if spec.help) + (
        f", or one of {hidden} more keys its help points to" if hidden else "")


class MovedOption(click.Option):
    """A click option that carries the old flags it replaced (``moved``: old -> new spelling):
    they answer with their new spelling on the commands that have this option."""

    def __init__(self, *args: Any, moved: Mapping[str, str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.moved = dict(moved or {})


def option(*names: str, moved: Mapping[str, str], **kwargs: Any) -> Callable[[F], F]:
    """``click.option(*names, **kwargs)`` carrying ``moved`` (old flag -> new spelling)."""
    return click.option(*names, cls=MovedOption, moved=moved, **kwargs)


class FamilyOption(MovedOption):
    """A family's click option: it knows its keys (``flags``: library parameter -> "--flag
    key", for errors) and the old flags that became them (``moved``: old -> new spelling)."""

    def __init__(self, *args: Any, keys: Mapping[str, Key], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keys = dict(keys)
        self.flags = {spec.param or key: f"{self.opts[0]} {key}" for key, spec in keys.items()}


def family(flag: str, dest: str, keys: Mapping[str, Key], help: str,
           metavar: str = "KEY=VALUE", renamed: Mapping[str, str] | None = None,
           words: Mapping[str, str] | None = None, uses: Collection[str] | None = None,
           moved: Mapping[str, str] | None = None) -> Callable[[F], F]:
    """The option ``flag``; the command receives ``dest``: {parameter: value} of the keys given
    (a key's ``param``, else the key itself).

    ``renamed``: old flag -> the key it became (the old flag then answers with the new spelling
    on the commands that have this family); ``moved``: old flag -> its whole new spelling
    (``--no-remedy`` -> ``--quantize remedy=off``). ``words``: a word -> the pairs it stands for.
    ``uses``: the keys this command takes (None: all), the only ones its help lists; another
    key of the family is refused with "CMD does not use KEY; it takes ..." (exit 2).
    """
    for key, spec in keys.items():
        KEY_FLAGS.setdefault(spec.param or key, f"{flag} {key}")
    moved = {**{old: f"{flag} {key}={keys[key].metavar}"
                for old, key in (renamed or {}).items()}, **(moved or {})}
    name = "_family_" + dest
    described = help.rstrip() + " Keys: " + ", ".join(  # what each means: the docs' table
        f"{k}={spec.metavar}" for k, spec in keys.items()
        if spec.help and (uses is None or k in uses)) + "."

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def command(*args: Any, **kwargs: Any) -> Any:
            texts = kwargs.pop(name)
            kwargs[dest] = parse_family(flag, keys, texts, click.get_current_context(True),
                                        words, uses)
            return f(*args, **kwargs)

        return click.option(flag, name, multiple=True, metavar=metavar,  # type: ignore
                            help=described, cls=FamilyOption, keys=keys, moved=moved)(command)
    return decorate


class Command(click.Command):
    """Every edgekit command: a flag that moved (this command's ``renamed``, the old flags its
    options carry: ``MovedOption.moved``) answers with its new spelling, exit 2, unless this
    command still has a flag of that name. Its help ends with the one option every command
    takes from the group, ``--debug``."""

    renamed: dict[str, str] = {}  # this command's own moved flags: old -> new spelling

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        formatter.write_paragraph()
        formatter.write_text("--debug anywhere on the line shows tracebacks and the runtimes' "
                             "own log lines.")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        head = args[:args.index("--")] if "--" in args else args
        own = {opt for p in self.params for opt in getattr(p, "opts", ())}
        moved = dict(self.renamed)
        for param in self.params:
            moved.update(getattr(param, "moved", {}))
        for arg in head:
            old = arg.split("=", 1)[0]
            if old.startswith("--") and old in moved and old not in own:
                raise click.UsageError(f"{old} is now {moved[old]}", ctx)
        return super().parse_args(ctx, args)
