"""The Ansible playbook and role that carry a deploy to every host of an inventory.

One writer for both uses: ``edgekit deploy --inventory`` writes it into a temporary folder and
runs it; ``edgekit playbook BUNDLE -o DIR`` writes it (with the files to ship copied in, and a
README) for people who run Ansible themselves. The role (``ansible/roles/edgekit_release``: one
task, one action plugin) gets edgekit's device agent and deploy steps in its ``files/``; the
plans (what ships to each target, every file with its sha256) go in ``plans.json``.
ansible-core is all it needs.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.deploy.inventory import ansible_cfg
from edgekit.deploy.plan import ReleasePlan
from edgekit.deploy.remote import STEPS
from edgekit.deploy.service import exec_start, serve_note, unit_text
from edgekit.deploy.shipping import agent_source
from edgekit.deploy.ssh import SshOptions
from edgekit.errors import UsageError
from edgekit.helpers.limits import finite, whole
from edgekit.helpers.records import keyword_only

ROLE = Path(__file__).with_name("ansible") / "roles" / "edgekit_release"
ROLE_NAME = "edgekit_release"
BASE_PLACEHOLDER = "/@EDGEKIT_BASE@"  # the action puts the device's release folder here
PLAYBOOKS = {"deploy": "deploy.yml", "rollback": "rollback.yml", "status": "status.yml"}


@keyword_only
@dataclass(frozen=True)
class Rollout:
    """How the play goes through the hosts: Ansible's serial, max_fail_percentage, forks."""

    serial: str | None = None  # "1", "2", "25%"; None: all hosts in one batch
    max_fail_percentage: float | None = None  # None: Ansible's default (no limit)
    forks: int = 5

    def __post_init__(self) -> None:
        if self.serial is not None and not re.fullmatch(r"[1-9][0-9]*%?", self.serial):
            raise UsageError(f"serial takes a number of hosts or a percentage (1, 3, 25%), "
                             f"not {self.serial!r}", param="serial")
        if self.serial is not None and self.serial.endswith("%") and \
                int(self.serial[:-1]) > 100:
            raise UsageError(f"serial {self.serial}: a percentage is 1% to 100%", param="serial")
        if self.max_fail_percentage is not None:
            finite(self.max_fail_percentage, "max_fail_percentage", low=0, high=100)
        whole(self.forks, "forks (hosts at once)")


@keyword_only
@dataclass(frozen=True)
class RoleSettings:
    """The role's defaults for this run; a host or group variable of the same name overrides
    one for that host."""

    default_target: str = ""  # the target of hosts without edgekit_target
    python: str = "python3"
    remote_dir: str = "edgekit"
    samples: int = 10
    keep: int = 3
    settle: float = 10.0
    lock_timeout: float = 0.0
    timeout: float = 60.0
    rollback_to: str = ""
    results_dir: str = ""
    secrets_file: str = ""


_COMMENTS = {
    "default_target": "the target of hosts without edgekit_target",
    "python": "the device's Python that makes the environment",
    "remote_dir": "where releases live on the device (relative: to the login home)",
    "samples": "validation samples the smoke test runs on the device (0: all)",
    "keep": "complete releases kept on each device",
    "settle": "seconds a restarted service must stay up, or current switches back",
    "lock_timeout": "seconds to wait for another deploy's lock on a device (0: refuse)",
    "timeout": "seconds a silent link is tolerated",
    "rollback_to": "rollback.yml: this release instead of the one before current",
    "results_dir": "set: each host's result as JSON there (edgekit deploy --inventory)",
    "secrets_file": "set: a 0600 JSON file, {target: {VARIABLE: value}}, of the service's "
                    "secrets (events credentials, EDGEKIT_SOURCE) for service.env",
}


def plan_vars(plan: ReleasePlan, service: bool, local: dict[str, str] | None = None
              ) -> dict[str, Any]:
    """What the role needs of one target's plan. ``local``: each file's path for the
    controller by its sha256 (default: where it lies here)."""
    notes = list(plan.notes)
    if plan.missing_formats:
        notes.append("not shipped (the bundle lacks them): " + "; ".join(
            f"{f}: {why}" for f, why in plan.missing_formats.items()))
    if plan.target.serve and not service:
        notes.append(serve_note(plan.target))
    return {
        "target": {"name": plan.target.name, "arch": plan.target.arch,
                   "python": plan.target.python},
        "model": plan.model, "formats": plan.formats, "notes": notes,
        "requires_python": plan.edgekit.requires_python,
        "content_hash": plan.content_hash(),
        "files": [{**f.to_dict(), "local": (local or {}).get(f.sha256, str(f.local.resolve()))}
                  for f in plan.files],
        "venv_inputs": plan.venv_inputs(), "venv": plan.venv_payload(),
        "smoke": plan.smoke_payload(), "meta": plan.meta(),
        "unit": unit_text(plan, BASE_PLACEHOLDER) if service else "",
        "unit_base": BASE_PLACEHOLDER, "backend": plan.backend, "imx500": plan.imx500,
        "command": " ".join(exec_start(plan, BASE_PLACEHOLDER)[1:]),
        # the live view the unit serves: with a unit, the device makes its token (shown once)
        "serve": plan.target.serve if service else "",
    }


def playbook_text(mode: str, rollout: Rollout, plans: bool) -> str:
    """One play over ``all`` (narrowed with --limit), the role with ``edgekit_mode``."""
    lines = [f"# Written by edgekit: edgekit {mode} on every host of the inventory.",
             f"# ansible-playbook -i INVENTORY {PLAYBOOKS[mode]} [--limit PATTERN]",
             f"- name: edgekit {mode}", "  hosts: all", "  gather_facts: false"]
    if rollout.serial is not None:
        serial = f'"{rollout.serial}"' if rollout.serial.endswith("%") else rollout.serial
        lines.append(f"  serial: {serial}  # hosts per batch: the first batch is the canary")
    if rollout.max_fail_percentage is not None:
        lines.append(f"  max_fail_percentage: {rollout.max_fail_percentage:g}  # more failed "
                     "hosts than this in a batch stops the rollout")
    if plans:
        lines += ["  vars_files:", "    - plans.json"]
    lines += ["  roles:", f"    - role: {ROLE_NAME}", f"      edgekit_mode: {mode}"]
    return "\n".join(lines) + "\n"


def defaults_text(settings: RoleSettings) -> str:
    lines = [f"# Defaults of the {ROLE_NAME} role for this playbook; a host or group variable "
             "of the same name", "# overrides one for that host (edgekit_target, "
             "edgekit_python, ... per device)."]
    for name, value in vars(settings).items():
        lines.append(f"edgekit_{name}: {json.dumps(value)}  # {_COMMENTS[name]}")
    return "\n".join(lines) + "\n"


def write_role(folder: Path, settings: RoleSettings) -> None:
    """The role, with edgekit's device agent in its files/ and this run's defaults."""
    role = folder / "roles" / ROLE_NAME
    shutil.copytree(ROLE, role, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (role / "files").mkdir()
    (role / "files" / "agent.py").write_bytes(agent_source())
    for name in ("steps.py", "checks.py"):  # the steps the action runs, and their checks
        shutil.copy2(STEPS.with_name(name), role / "files" / name)
    (role / "defaults").mkdir()
    (role / "defaults" / "main.yml").write_text(defaults_text(settings))


def write_playbooks(folder: Path, plans: dict[str, dict[str, Any]], settings: RoleSettings,
                    rollout: Rollout, ssh: SshOptions, control_dir: Path | None = None) -> None:
    """Everything ansible-playbook needs in ``folder`` (which exists)."""
    (folder / "ansible.cfg").write_text(ansible_cfg(ssh, rollout.forks, control_dir))
    write_role(folder, settings)
    (folder / "plans.json").write_text(json.dumps({"edgekit_plans": plans}, indent=1) + "\n")
    for mode, name in PLAYBOOKS.items():
        (folder / name).write_text(playbook_text(mode, rollout, plans=mode == "deploy"))


def copy_files(plans: dict[str, ReleasePlan], folder: Path) -> dict[str, str]:
    """Copy every shipped file into ``folder``/files/ once (by sha256); their paths there,
    relative to ``folder`` (the playbook's own folder, where the action looks)."""
    local = {}
    for plan in plans.values():
        for f in plan.files:
            if f.sha256 in local:
                continue
            rel = Path("files") / f.sha256[:16] / Path(f.path).name
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f.local, folder / rel)
            local[f.sha256] = str(rel)
    return local


def readme_text(deploy: Any, request: Any, plans: dict[str, ReleasePlan], hosts: list[Any],
                keys: dict[str, str]) -> str:
    """The emitted folder's README: what it deploys, to whom, and how to run it."""
    targets = "\n".join(
        f"| `{key}` | {plan.target.name} ({plan.target.arch}, Python {plan.target.python}) | "
        f"{', '.join(plan.formats)} | {len(plan.files)} files, {plan.total_bytes:,} B | "
        f"{plan.backend} |" for key, plan in plans.items())
    listed = "\n".join(f"- `{h.name}` ({h.address}): target `{keys[h.name]}`" for h in hosts)
    model = next(iter(plans.values())).model
    views = [f"`{key}` ({plan.target.serve})" for key, plan in plans.items()
             if plan.target.serve]
    live = live_view_section(views, bool(deploy.service)) if views else ""
    return f"""# edgekit deploy: {model}, as an Ansible playbook

Written by `edgekit playbook {deploy.bundle} --inventory {request.inventory} -o DIR`.
It needs ansible-core only (no edgekit on the controller): the role `roles/{ROLE_NAME}` has
edgekit's device agent (`files/agent.py`, Python 3.7+ standard library, sent on stdin with each
call; nothing is installed on the device to run it) and one action plugin that drives it over
each host's own SSH connection. Every file to ship is in `files/`, and `plans.json` lists them
with their sha256 per target.

```sh
ansible-playbook -i INVENTORY deploy.yml [--limit PATTERN] [--forks N]
ansible-playbook -i INVENTORY status.yml      # each host's releases (read only)
ansible-playbook -i INVENTORY rollback.yml    # back to the release before current
ansible-playbook -i INVENTORY rollback.yml -e edgekit_rollback_to=RELEASE
```

## What each host gets

The same steps as `edgekit deploy --host`: take the device's deploy lock (one deploy or
rollback at a time; held by its own SSH session with a heartbeat, until the last step); check
the device's platform and Python against the target; stage `~/edgekit/releases/.incoming-<id>`,
hard-linking files an earlier release already holds (a redeploy of an unchanged bundle copies
0 bytes); copy the missing files; check every sha256 and size on the device; reuse or create
the Python environment; smoke test the new release (`edgekit verify` on the device); only then
switch `current` with one rename, restart and watch the service (if one is installed) for
`edgekit_settle` seconds and switch back when it does not stay up. A failure before the switch
removes the new folder: the running release is untouched. The task fails for that host with
one line saying which step failed and why; its result (`edgekit` in the task's result) holds
every detail.
{live}
| `edgekit_target` | target | ships | size | backend |
|---|---|---|---|---|
{targets}

Hosts without `edgekit_target` get `{deploy.target or '(none: set edgekit_target)'}`
(`edgekit_default_target` in `roles/{ROLE_NAME}/defaults/main.yml`). A host whose
`edgekit_target` has no plan here fails with a message naming the plans there are: write the
folder again with that target. The inventory this was written for:

{listed}

## Settings

- `deploy.yml`'s play: `serial` and `max_fail_percentage` (from edgekit's `--rollout
  serial=N,max-fail=P`): with `serial: 1` and `max_fail_percentage: 0`, a failing first host
  stops the rollout and the others are untouched.
- `roles/{ROLE_NAME}/defaults/main.yml`: the device's Python (`edgekit_python`), the releases'
  folder (`edgekit_remote_dir`), the smoke test's samples, releases kept, the service's settle
  time, the lock's wait; set any of them as a host or group variable to override it per host.
- The service's secrets (the events' MQTT or webhook credentials, a camera URL with a password,
  which the unit reads as `EDGEKIT_SOURCE`) are not in this folder: give them as a JSON file
  of mode 0600, `{{"TARGET": {{"VARIABLE": "value"}}}}`, with `-e edgekit_secrets_file=FILE`;
  each device gets its target's part in its `~/edgekit/service.env` (mode 0600).
- `ansible.cfg`: ssh's options. Host-key checking stays on (`StrictHostKeyChecking=yes`, before
  anything Ansible adds): trust each device's key first (`ssh-keyscan -p PORT HOST >>
  ~/.ssh/known_hosts`, after checking its fingerprint). In AWX or CI, keep your own
  `ansible.cfg` if you have one, with `StrictHostKeyChecking=yes` in `ssh_args`; never set
  `host_key_checking = False`. The role needs the `ssh` connection and Python 3 on each device.
"""


def live_view_section(views: list[str], service: bool) -> str:
    """The emitted README's words on the live view of the targets that ask for it."""
    if not service:
        return (f"\nTargets {', '.join(views)} ask for the live view; it runs with the service: "
                "write this folder again with `--service`.\n")
    return f"""
## The live view

Targets {', '.join(views)} ask for the live view, which the service serves. Before the switch,
each such device makes its own token (Python's `secrets`, on the device) the first time, keeps
it in `~/edgekit/service.env` (mode 0600), which the unit reads (`EnvironmentFile=`): the token
is on no command line and in no file here. The role's second task then shows each host's URL,
with the token only when it was just made: this is the only time it is shown, so note it (or
open it: the browser keeps it). Later runs keep the token and show the URL without it;
`status.yml` shows each host's URL and where its token is. Where job output is kept (AWX, a
CI log), that output holds each new token (the second task's line, and with `-v` the first
task's result): keep it private. To change a device's token, remove its `service.env` and run
`deploy.yml` again.
"""
