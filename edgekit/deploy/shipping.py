"""The device agent as the workstation sends it: one script on ssh's stdin.

The agent is a package (``edgekit/deploy/agent/``) so that no module of it grows past what one
can read, but a device gets one stream: this bundles the package's sources into a small script
that serves them to ``import`` from memory (a finder on ``sys.meta_path``) and runs
``main``. The script is standard library only and runs on Python 3.7+, as the agent does.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).with_name("agent")
NAME = "edgekit_agent"  # the package's name on the device (its modules import relatively)

BOOTSTRAP = '''\
"""edgekit's device agent, bundled: its modules load from SOURCES, then main answers."""
import importlib.abc
import importlib.util
import sys

PACKAGE = {package!r}
SOURCES = {sources!r}
# Secrets for the payload (remote.SshLink writes them here, never on the command line):
PRIVATE = {{}}


class Sources(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name not in SOURCES:
            return None
        return importlib.util.spec_from_loader(name, self, is_package=name == PACKAGE)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        name = module.__name__
        where = "agent/" + ("__init__" if name == PACKAGE else name.rpartition(".")[2]) + ".py"
        exec(compile(SOURCES[name], where, "exec"), module.__dict__)


sys.meta_path.insert(0, Sources())
from {package} import main  # noqa: E402

main.PRIVATE.update(PRIVATE)
sys.exit(main.main(sys.argv))
'''


def modules() -> dict[str, str]:
    """The agent's sources by module name as the device knows them."""
    found = {}
    for path in sorted(PACKAGE.glob("*.py")):
        name = NAME if path.stem == "__init__" else f"{NAME}.{path.stem}"
        found[name] = path.read_text()
    return found


@lru_cache(maxsize=1)
def agent_source() -> bytes:
    """The script a device runs as ``python3 - COMMAND JSON`` (or through the lock's BOOT)."""
    return BOOTSTRAP.format(package=NAME, sources=modules()).encode()
